//! Builds the C core (libdmaq.a) with cmake from the repository this crate
//! lives in, or links the libdmaq in `DMAQ_LIB_DIR` when that is set. No
//! downloads: everything comes from the source tree and Debian's packages
//! (cmake, gcc, libxxhash-dev; for the `tcp` feature libsodium-dev and
//! libzstd-dev).
//!
//! The `tcp` and `rdma` features (on by default) link those transports as
//! archives, libdmaq-tcp.a and libdmaq-rdma.a, which the crate registers on
//! first use: their plugin forms, libdmaq-tcp.so and libdmaq-rdma.so, are
//! built against libdmaq.so and could not join a core linked statically.
//! rdma:// needs libibverbs-dev and librdmacm-dev; where they are missing
//! the build warns and goes on without it. Against a shared libdmaq
//! (DMAQ_LIB_DIR holding libdmaq.so), the core's loader finds the plugins
//! beside it.
use std::env;
use std::path::PathBuf;
use std::process::Command;

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("dmaq build: cannot run {:?}: {}", cmd, e));
    assert!(status.success(), "dmaq build: {:?} failed ({})", cmd, status);
}

fn main() {
    println!("cargo:rerun-if-env-changed=DMAQ_LIB_DIR");
    println!("cargo:rustc-check-cfg=cfg(dmaq_static_tcp)");
    println!("cargo:rustc-check-cfg=cfg(dmaq_static_rdma)");
    let tcp = env::var_os("CARGO_FEATURE_TCP").is_some();
    let mut rdma = env::var_os("CARGO_FEATURE_RDMA").is_some();
    if let Ok(dir) = env::var("DMAQ_LIB_DIR") {
        let dir = PathBuf::from(dir);
        println!("cargo:rustc-link-search=native={}", dir.display());
        if dir.join("libdmaq.a").exists() {
            if rdma && dir.join("libdmaq-rdma.a").exists() {
                link_static_rdma();
            }
            if tcp && dir.join("libdmaq-tcp.a").exists() {
                link_static_tcp();
            }
            println!("cargo:rustc-link-lib=static=dmaq");
        } else {
            println!("cargo:rustc-link-lib=dylib=dmaq");
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        }
        return;
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let source = manifest.join("..").join("..");
    assert!(
        source.join("core").join("include").join("dmaq").join("dmaq.h").exists(),
        "dmaq build: the C sources are not at {}; set DMAQ_LIB_DIR to a built libdmaq",
        source.display()
    );
    for dir in ["core", "CMakeLists.txt"] {
        println!("cargo:rerun-if-changed={}", source.join(dir).display());
    }
    let build = PathBuf::from(env::var("OUT_DIR").unwrap()).join("cmake-build");
    run(Command::new("cmake").arg("-S").arg(&source).arg("-B").arg(&build).args([
        // The project's default flags (-O2): its -O3 build measured 5-10% slower on peek.
        "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
        "-DDMAQ_BUILD_TESTS=OFF",
        "-DDMAQ_BUILD_BENCH=OFF",
        "-DDMAQ_BUILD_EXAMPLES=OFF",
        if tcp { "-DDMAQ_BUILD_TCP=ON" } else { "-DDMAQ_BUILD_TCP=OFF" },
        if rdma { "-DDMAQ_BUILD_RDMA=ON" } else { "-DDMAQ_BUILD_RDMA=OFF" },
    ]));
    if rdma && !Command::new("pkg-config").args(["--exists", "libibverbs", "librdmacm"]).status().map_or(false, |s| s.success()) {
        println!("cargo:warning=dmaq: no rdma:// (libibverbs-dev and librdmacm-dev are not installed)");
        rdma = false;
    }
    let jobs = env::var("NUM_JOBS").unwrap_or_else(|_| "1".into());
    let mut targets = vec!["--target", "dmaq_static"];
    if tcp {
        targets.extend(["--target", "dmaq-tcp-static"]);
    }
    if rdma {
        targets.extend(["--target", "dmaq-rdma-static"]);
    }
    run(Command::new("cmake").arg("--build").arg(&build).args(targets).args(["-j", &jobs]));
    println!("cargo:rustc-link-search=native={}", build.display());
    if rdma {
        link_static_rdma();
    }
    if tcp {
        link_static_tcp();
    }
    println!("cargo:rustc-link-lib=static=dmaq");
}

/// libdmaq-tcp.a and what it needs; before libdmaq.a, whose symbols it uses.
fn link_static_tcp() {
    println!("cargo:rustc-cfg=dmaq_static_tcp");
    println!("cargo:rustc-link-lib=static=dmaq-tcp");
    println!("cargo:rustc-link-lib=dylib=sodium");
    println!("cargo:rustc-link-lib=dylib=zstd");
}

/// libdmaq-rdma.a (the tcp:// sources over RDMA, its own symbols local) and
/// what it needs; before libdmaq.a.
fn link_static_rdma() {
    println!("cargo:rustc-cfg=dmaq_static_rdma");
    println!("cargo:rustc-link-lib=static=dmaq-rdma");
    for lib in ["rdmacm", "ibverbs", "sodium", "zstd"] {
        println!("cargo:rustc-link-lib=dylib={}", lib);
    }
}
