//! The structs of `dmaq::ffi` are the C header's: size, alignment and every
//! field's offset, as the C compiler reports them, and the sizes the library
//! itself reports.
use dmaq::ffi;
use std::mem::{align_of, size_of};
use std::process::Command;

macro_rules! offset_of {
    ($t:ty, $f:ident) => {{
        let v = std::mem::MaybeUninit::<$t>::uninit();
        let base = v.as_ptr() as usize;
        (unsafe { std::ptr::addr_of!((*v.as_ptr()).$f) } as usize) - base
    }};
}

#[test]
fn sizes_match_what_the_library_reports() {
    unsafe {
        assert_eq!(ffi::dmaq_struct_size(ffi::DMAQ_STRUCT_OPTIONS), size_of::<ffi::dmaq_options>());
        assert_eq!(ffi::dmaq_struct_size(ffi::DMAQ_STRUCT_LEASE), size_of::<ffi::dmaq_lease>());
        assert_eq!(ffi::dmaq_struct_size(ffi::DMAQ_STRUCT_STAT), size_of::<ffi::dmaq_stat>());
        assert_eq!(ffi::dmaq_struct_size(ffi::DMAQ_STRUCT_SUB_STAT), size_of::<ffi::dmaq_sub_stat>());
    }
}

#[test]
fn layouts_match_what_the_c_compiler_says() {
    let header_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../core/include");
    let fields: &[(&str, &[&str])] = &[
        ("dmaq_options", &["size", "kind", "policy", "flags", "capacity", "max_message", "mode", "start", "spin_ns", "shm_dir"]),
        ("dmaq_lease", &["data", "len", "seq", "timestamp_ns", "publisher_id", "flags", "lost", "opaque_"]),
        ("dmaq_stat", &["size", "kind", "policy", "mode", "capacity", "max_message", "bytes_used", "published",
                        "publishers", "subscribers", "creator_pid", "flags"]),
        ("dmaq_sub_stat", &["received", "lost", "lag", "lag_bytes", "pid", "alive"]),
    ];
    let mut probe = String::from("#include <dmaq/dmaq.h>\n#include <stddef.h>\n#include <stdio.h>\nint main(void) {\n");
    for (t, fs) in fields {
        probe += &format!("printf(\"{t} %zu %zu\\n\", sizeof({t}), _Alignof({t}));\n");
        for f in fs.iter() {
            probe += &format!("printf(\"{t}.{f} %zu\\n\", offsetof({t}, {f}));\n");
        }
    }
    probe += "return 0;\n}\n";
    let dir = std::env::temp_dir().join(format!("dmaq-abi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("probe.c"), probe).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=c11", "-I", header_dir, "-o"])
        .arg(dir.join("probe"))
        .arg(dir.join("probe.c"))
        .status()
        .expect("running the C compiler");
    assert!(status.success(), "the probe did not compile");
    let out = Command::new(dir.join("probe")).output().unwrap();
    let c = String::from_utf8(out.stdout).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let rust: Vec<(String, usize, Option<usize>)> = vec![
        ("dmaq_options".into(), size_of::<ffi::dmaq_options>(), Some(align_of::<ffi::dmaq_options>())),
        ("dmaq_lease".into(), size_of::<ffi::dmaq_lease>(), Some(align_of::<ffi::dmaq_lease>())),
        ("dmaq_stat".into(), size_of::<ffi::dmaq_stat>(), Some(align_of::<ffi::dmaq_stat>())),
        ("dmaq_sub_stat".into(), size_of::<ffi::dmaq_sub_stat>(), Some(align_of::<ffi::dmaq_sub_stat>())),
        ("dmaq_options.size".into(), offset_of!(ffi::dmaq_options, size), None),
        ("dmaq_options.kind".into(), offset_of!(ffi::dmaq_options, kind), None),
        ("dmaq_options.policy".into(), offset_of!(ffi::dmaq_options, policy), None),
        ("dmaq_options.flags".into(), offset_of!(ffi::dmaq_options, flags), None),
        ("dmaq_options.capacity".into(), offset_of!(ffi::dmaq_options, capacity), None),
        ("dmaq_options.max_message".into(), offset_of!(ffi::dmaq_options, max_message), None),
        ("dmaq_options.mode".into(), offset_of!(ffi::dmaq_options, mode), None),
        ("dmaq_options.start".into(), offset_of!(ffi::dmaq_options, start), None),
        ("dmaq_options.spin_ns".into(), offset_of!(ffi::dmaq_options, spin_ns), None),
        ("dmaq_options.shm_dir".into(), offset_of!(ffi::dmaq_options, shm_dir), None),
        ("dmaq_lease.data".into(), offset_of!(ffi::dmaq_lease, data), None),
        ("dmaq_lease.len".into(), offset_of!(ffi::dmaq_lease, len), None),
        ("dmaq_lease.seq".into(), offset_of!(ffi::dmaq_lease, seq), None),
        ("dmaq_lease.timestamp_ns".into(), offset_of!(ffi::dmaq_lease, timestamp_ns), None),
        ("dmaq_lease.publisher_id".into(), offset_of!(ffi::dmaq_lease, publisher_id), None),
        ("dmaq_lease.flags".into(), offset_of!(ffi::dmaq_lease, flags), None),
        ("dmaq_lease.lost".into(), offset_of!(ffi::dmaq_lease, lost), None),
        ("dmaq_lease.opaque_".into(), offset_of!(ffi::dmaq_lease, opaque_), None),
        ("dmaq_stat.size".into(), offset_of!(ffi::dmaq_stat, size), None),
        ("dmaq_stat.kind".into(), offset_of!(ffi::dmaq_stat, kind), None),
        ("dmaq_stat.policy".into(), offset_of!(ffi::dmaq_stat, policy), None),
        ("dmaq_stat.mode".into(), offset_of!(ffi::dmaq_stat, mode), None),
        ("dmaq_stat.capacity".into(), offset_of!(ffi::dmaq_stat, capacity), None),
        ("dmaq_stat.max_message".into(), offset_of!(ffi::dmaq_stat, max_message), None),
        ("dmaq_stat.bytes_used".into(), offset_of!(ffi::dmaq_stat, bytes_used), None),
        ("dmaq_stat.published".into(), offset_of!(ffi::dmaq_stat, published), None),
        ("dmaq_stat.publishers".into(), offset_of!(ffi::dmaq_stat, publishers), None),
        ("dmaq_stat.subscribers".into(), offset_of!(ffi::dmaq_stat, subscribers), None),
        ("dmaq_stat.creator_pid".into(), offset_of!(ffi::dmaq_stat, creator_pid), None),
        ("dmaq_stat.flags".into(), offset_of!(ffi::dmaq_stat, flags), None),
        ("dmaq_sub_stat.received".into(), offset_of!(ffi::dmaq_sub_stat, received), None),
        ("dmaq_sub_stat.lost".into(), offset_of!(ffi::dmaq_sub_stat, lost), None),
        ("dmaq_sub_stat.lag".into(), offset_of!(ffi::dmaq_sub_stat, lag), None),
        ("dmaq_sub_stat.lag_bytes".into(), offset_of!(ffi::dmaq_sub_stat, lag_bytes), None),
        ("dmaq_sub_stat.pid".into(), offset_of!(ffi::dmaq_sub_stat, pid), None),
        ("dmaq_sub_stat.alive".into(), offset_of!(ffi::dmaq_sub_stat, alive), None),
    ];
    let mut checked = 0;
    for line in c.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (name, size) = (parts[0], parts[1].parse::<usize>().unwrap());
        let (_, rsize, ralign) = rust.iter().find(|(n, _, _)| n == name).unwrap_or_else(|| panic!("{} not checked", name));
        assert_eq!(*rsize, size, "{}: Rust says {}, C says {}", name, rsize, size);
        if let Some(a) = ralign {
            assert_eq!(*a, parts[2].parse::<usize>().unwrap(), "{} alignment", name);
        }
        checked += 1;
    }
    assert_eq!(checked, rust.len(), "every size, alignment and offset was compared");
}
