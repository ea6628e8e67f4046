/* Creating, opening, validating, describing and removing shm channels. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "../util/clock.h"
#include "../util/proc.h"
#include "dmaq/transport.h"
#include "shm.h"

/* How long an opener waits for a half-made channel file whose creator is
 * unknown or alive before giving up on it. */
#ifndef CREATE_WAIT_NS /* the fuzz targets set 0 */
#define CREATE_WAIT_NS 2000000000ull
#endif
/* Files being created are made under this prefix and renamed into place
 * when complete: "<dir>/.dmaq-tmp.<pid ns>.<pid>.<start time>.<n>.<name>".
 * The PID namespace keeps containers that share the directory from taking
 * each other's live creators for dead ones. */
#define TMP_PREFIX ".dmaq-tmp."
/* shm_chan_open's answer when the file it looked at went away or was
 * replaced (or it removed it): look again. Not a DMAQ_E* code. */
#define RETRY 1

static const char *kind_name(uint32_t kind)
{
    return kind == DMAQ_KIND_QUEUE ? "queue" : kind == DMAQ_KIND_BROADCAST ? "broadcast" : "unknown";
}

static const char *policy_name(uint32_t policy)
{
    return policy == DMAQ_POLICY_BLOCK ? "block" : policy == DMAQ_POLICY_OVERWRITE ? "overwrite" : "unknown";
}

static int check_name(const char *address)
{
    size_t n = strnlen(address, DMAQ_NAME_MAX + 1);
    if (n == 0)
        return dmaq_error_set(DMAQ_EINVAL, "channel name is empty (expected shm://NAME)");
    if (n > DMAQ_NAME_MAX)
        return dmaq_error_set(DMAQ_EINVAL, "channel name '%.40s...' is longer than %u bytes", address,
                              DMAQ_NAME_MAX);
    if (address[0] == '.')
        return dmaq_error_set(DMAQ_EINVAL, "channel name '%s' may not start with '.'", address);
    for (size_t i = 0; i < n; i++) {
        char c = address[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-' || c == '.'))
            return dmaq_error_set(DMAQ_EINVAL,
                                  "channel name '%s' has character 0x%02x at %zu; use letters, digits, '_', "
                                  "'-' and '.'",
                                  address, (unsigned char)c, i);
    }
    return 0;
}

/* Where the channel at `address` lives: "NAME" is in `dir` (the options'),
 * else in $DMAQ_SHM_DIR, else in /dev/shm; "/DIR/NAME" names its directory.
 * Fills ch->dir, ch->name and ch->path. */
static int resolve_location(struct shm_chan *ch, const char *address, const char *dir)
{
    const char *name = address;
    size_t dir_len;
    if (address[0] == '/') {
        name = strrchr(address, '/') + 1;
        dir = address;
        dir_len = name - 1 == address ? 1 : (size_t)(name - 1 - address);
    } else {
        if (!dir || !dir[0])
            dir = secure_getenv("DMAQ_SHM_DIR");
        if (!dir || !dir[0])
            dir = "/dev/shm";
        dir_len = strnlen(dir, SHM_DIR_MAX + 1);
        if (dir[0] != '/')
            return dmaq_error_set(DMAQ_EINVAL, "channel directory '%.100s' is not an absolute path", dir);
    }
    if (dir_len > SHM_DIR_MAX)
        return dmaq_error_set(DMAQ_EINVAL, "channel directory '%.60s...' is longer than %u bytes", dir,
                              SHM_DIR_MAX);
    int rc = check_name(name);
    if (rc < 0)
        return rc;
    memcpy(ch->dir, dir, dir_len);
    ch->dir[dir_len] = 0;
    strcpy(ch->name, name);
    snprintf(ch->path, sizeof ch->path, "%s/" SHM_PREFIX "%s", strcmp(ch->dir, "/") ? ch->dir : "", name);
    return 0;
}

static int errno_to_dmaq(int err, const char *what, const struct shm_chan *ch)
{
    switch (err) {
    case EACCES:
    case EPERM:
        return dmaq_error_set(DMAQ_EACCES, "%s channel '%s': permission denied on %s", what, ch->name, ch->path);
    case ENOENT:
        return dmaq_error_set(DMAQ_ENOENT, "channel '%s' does not exist (no %s)", ch->name, ch->path);
    case ELOOP:
        return dmaq_error_set(DMAQ_ENOTCHAN, "%s is a symbolic link, not a dmaq channel; refusing to follow it",
                              ch->path);
    case ENOSPC:
    case EFBIG:
        return dmaq_error_set(DMAQ_ENOSPC, "%s channel '%s': no space left in %s", what, ch->name, ch->dir);
    case ENOMEM:
        return dmaq_error_set(DMAQ_ENOMEM, "%s channel '%s': out of memory", what, ch->name);
    default:
        return dmaq_error_set(DMAQ_ESYS, "%s channel '%s' (%s): %s", what, ch->name, ch->path, strerror(err));
    }
}

/* The options a creator would use, with defaults filled in and checked. */
static int resolve_create_options(const dmaq_options *in, dmaq_options *o, const char *name)
{
    *o = *in;
    if (o->kind == DMAQ_KIND_ANY)
        o->kind = DMAQ_KIND_BROADCAST;
    if (o->kind != DMAQ_KIND_QUEUE && o->kind != DMAQ_KIND_BROADCAST)
        return dmaq_error_set(DMAQ_EINVAL, "channel '%s': unknown kind %u", name, in->kind);
    if (o->policy == DMAQ_POLICY_ANY)
        o->policy = DMAQ_POLICY_BLOCK;
    if (o->policy != DMAQ_POLICY_BLOCK && o->policy != DMAQ_POLICY_OVERWRITE)
        return dmaq_error_set(DMAQ_EINVAL, "channel '%s': unknown policy %u", name, in->policy);
    if (o->kind == DMAQ_KIND_QUEUE && o->policy == DMAQ_POLICY_OVERWRITE)
        return dmaq_error_set(DMAQ_EINVAL, "channel '%s': a queue cannot overwrite (use broadcast)", name);
    if (o->capacity == 0)
        o->capacity = DMAQ_CAPACITY_DEFAULT;
    if (o->capacity < DMAQ_CAPACITY_MIN || o->capacity > SHM_CAPACITY_MAX || (o->capacity & (o->capacity - 1)))
        return dmaq_error_set(DMAQ_EINVAL,
                              "channel '%s': capacity %llu must be a power of two from %u to 2^40 bytes", name,
                              (unsigned long long)o->capacity, DMAQ_CAPACITY_MIN);
    uint64_t max_allowed = o->capacity / 2 - DMAQ_RECORD_HEADER;
    if (o->max_message == 0)
        o->max_message = o->capacity / 4;
    if (o->max_message > max_allowed)
        return dmaq_error_set(DMAQ_EINVAL,
                              "channel '%s': max_message %llu exceeds %llu (capacity/2 minus the %u-byte "
                              "record header)",
                              name, (unsigned long long)o->max_message, (unsigned long long)max_allowed,
                              DMAQ_RECORD_HEADER);
    if (o->mode == 0)
        o->mode = 0600;
    if (o->mode & ~0777u)
        return dmaq_error_set(DMAQ_EINVAL, "channel '%s': mode %o has bits beyond 0777", name, o->mode);
    if (o->start != DMAQ_START_NEWEST && o->start != DMAQ_START_OLDEST)
        return dmaq_error_set(DMAQ_EINVAL, "channel '%s': unknown start position %u", name, o->start);
    if (o->flags & ~(uint32_t)(DMAQ_OPEN_NO_CREATE | DMAQ_OPEN_HUGEPAGES | DMAQ_OPEN_FENCED | DMAQ_OPEN_NO_TIMESTAMPS))
        return dmaq_error_set(DMAQ_EINVAL, "channel '%s': unknown flags 0x%x", name, o->flags);
    return 0;
}

static uint64_t meta_checksum(const struct shm_meta *m) { return XXH64(m, sizeof *m, 0); }

/* Everything a mapping must satisfy before any other code touches it. */
static int validate_meta(const struct shm_meta *m, uint64_t checksum, uint64_t file_size, const struct shm_chan *ch)
{
    const char *name = ch->name;
    if (m->magic != SHM_MAGIC)
        return dmaq_error_set(DMAQ_ENOTCHAN, "%s is not a dmaq channel (bad magic)", ch->path);
    if (m->layout_version != SHM_LAYOUT_VERSION)
        return dmaq_error_set(DMAQ_EVERSION, "channel '%s' has layout version %u; this library reads %u", name,
                              m->layout_version, SHM_LAYOUT_VERSION);
    if (meta_checksum(m) != checksum)
        return dmaq_error_set(DMAQ_ECORRUPT, "channel '%s': header checksum mismatch (header was overwritten)",
                              name);
    /* A checksum only proves the bytes are as written; a hostile writer can
     * forge it, so the values are checked too. */
    if ((m->kind != DMAQ_KIND_QUEUE && m->kind != DMAQ_KIND_BROADCAST) ||
        (m->policy != DMAQ_POLICY_BLOCK && m->policy != DMAQ_POLICY_OVERWRITE) ||
        (m->kind == DMAQ_KIND_QUEUE && m->policy != DMAQ_POLICY_BLOCK) || m->capacity < DMAQ_CAPACITY_MIN ||
        m->capacity > SHM_CAPACITY_MAX || (m->capacity & (m->capacity - 1)) ||
        m->max_message > m->capacity / 2 - DMAQ_RECORD_HEADER || m->ring_offset != SHM_RING_OFFSET ||
        m->pub_slots != DMAQ_MAX_PUBLISHERS || m->sub_slots != DMAQ_MAX_SUBSCRIBERS ||
        m->file_size != (uint64_t)m->ring_offset + m->capacity)
        return dmaq_error_set(DMAQ_ECORRUPT, "channel '%s': header fields are inconsistent", name);
    if (file_size < m->file_size)
        return dmaq_error_set(DMAQ_ECORRUPT, "channel '%s' is truncated: %llu of %llu bytes", name,
                              (unsigned long long)file_size, (unsigned long long)m->file_size);
    return 0;
}

static int check_compatible(const struct shm_meta *m, const dmaq_options *want, const char *name)
{
    if (want->kind && want->kind != m->kind)
        return dmaq_error_set(DMAQ_EINCOMPAT, "channel '%s' was created as %s, opened as %s", name,
                              kind_name(m->kind), kind_name(want->kind));
    if (want->policy && want->policy != m->policy)
        return dmaq_error_set(DMAQ_EINCOMPAT, "channel '%s' was created with policy %s, opened with %s", name,
                              policy_name(m->policy), policy_name(want->policy));
    if (want->capacity && want->capacity != m->capacity)
        return dmaq_error_set(DMAQ_EINCOMPAT, "channel '%s' has capacity %llu, opened with %llu", name,
                              (unsigned long long)m->capacity, (unsigned long long)want->capacity);
    if (want->max_message && want->max_message != m->max_message)
        return dmaq_error_set(DMAQ_EINCOMPAT, "channel '%s' has max_message %llu, opened with %llu", name,
                              (unsigned long long)m->max_message, (unsigned long long)want->max_message);
    return 0;
}

static uint64_t random_salt(void)
{
    uint64_t s = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &s, sizeof s) != (ssize_t)sizeof s)
            s = 0;
        close(fd);
    }
    s ^= dmaq__now_ns(CLOCK_REALTIME) * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    return s | 1; /* never 0, so a zeroed ring holds no committed tag at position 0 */
}

static int map_fd(struct shm_chan *ch, int fd, uint64_t file_size, uint32_t flags, const char *what)
{
    void *p = mmap(NULL, file_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED)
        return errno_to_dmaq(errno, what, ch);
    if (flags & DMAQ_OPEN_HUGEPAGES)
        madvise(p, file_size, MADV_HUGEPAGE); /* advice: tmpfs may decline it */
    /* Touch every page now, not on the ring's first lap. MAP_POPULATE fills
     * the page tables, but under a hypervisor that shadows them (as on the
     * VMs we measure) a page's first access still traps to it, 5 us per
     * page, per process: that was 360 ns per message for a whole first lap
     * of 64 B messages. A read is enough; later writes do not trap. */
    long page = sysconf(_SC_PAGESIZE);
    for (uint64_t off = 0; off < file_size; off += page > 0 ? (uint64_t)page : 4096)
        (void)*(volatile const unsigned char *)((const unsigned char *)p + off);
    ch->hdr = p;
    ch->map_len = file_size;
    return 0;
}

static void fill_view(struct shm_chan *ch, const struct shm_meta *m)
{
    ch->ring = (unsigned char *)ch->hdr + m->ring_offset;
    ch->capacity = m->capacity;
    /* Records start at multiples of DMAQ_RECORD_ALIGN. Masking the low bits
     * as well keeps a position read from a scribbled header from making a
     * misaligned record pointer; the record's tag then fails to match it. */
    ch->mask = (m->capacity - 1) & ~(uint64_t)(DMAQ_RECORD_ALIGN - 1);
    ch->max_message = m->max_message;
    uint64_t single = shm_record_size(m->max_message);
    ch->segment = shm_segment_size(m->capacity, single);
    /* Packed records stay within a quarter segment, as single ones do. */
    ch->pack_bytes = SHM_PACK_BYTES < ch->segment / 4 ? SHM_PACK_BYTES : ch->segment / 4;
    ch->max_record = single > ch->pack_bytes ? single : ch->pack_bytes;
    ch->salt = m->salt;
    ch->kind = m->kind;
    ch->policy = m->policy;
}

/* Does `path` still name the file open as `fd`? */
static bool same_file(int fd, const char *path)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && lstat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Remove the files of channels whose creation a dead process of our PID
 * namespace left half done. Nobody else ever opens them, so a dead
 * creator's are garbage: left alone, they would hold the space the next
 * creation needs. Returns how many were removed. */
static int sweep_dead_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int removed = 0;
    unsigned long long own_ns = dmaq__pid_ns(), ns, start;
    int pid;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) != 0 ||
            sscanf(e->d_name + strlen(TMP_PREFIX), "%llu.%d.%llu.", &ns, &pid, &start) != 3 || ns != own_ns ||
            dmaq__proc_alive(pid, start))
            continue;
        removed += unlinkat(dirfd(d), e->d_name, 0) == 0;
    }
    closedir(d);
    return removed;
}

static int no_room(const struct shm_chan *ch, uint64_t file_size, uint64_t capacity)
{
    struct statvfs v;
    unsigned long long free_bytes = statvfs(ch->dir, &v) == 0 ? (unsigned long long)v.f_bavail * v.f_frsize : 0;
    return dmaq_error_set(DMAQ_ENOSPC,
                          "creating channel '%s': %s has %llu bytes free, the channel needs %llu (capacity "
                          "%llu); use a smaller capacity or a bigger %s",
                          ch->name, ch->dir, free_bytes, (unsigned long long)file_size,
                          (unsigned long long)capacity, ch->dir);
}

/* posix_fallocate of the whole file, in pieces. A signal arriving during
 * tmpfs's fallocate fails it with EINTR (Linux 6.1, Debian 12's kernel) and
 * undoes that call's pages, so a process with a busy interval timer or a
 * job-control stop would fail, or never finish, one big call: a piece that
 * is interrupted is halved and tried again (finished pieces stay), one that
 * completes lets the next grow. */
static int allocate_pages(int fd, uint64_t size)
{
    const uint64_t max_piece = 8u << 20, min_piece = 4096;
    uint64_t piece = max_piece;
    for (uint64_t off = 0; off < size;) {
        uint64_t len = size - off < piece ? size - off : piece;
        int err = posix_fallocate(fd, (off_t)off, (off_t)len);
        if (err == EINTR) {
            piece = piece / 2 > min_piece ? piece / 2 : min_piece;
            continue;
        }
        if (err)
            return err;
        off += len;
        piece = piece * 2 < max_piece ? piece * 2 : max_piece;
    }
    return 0;
}

/* Size, allocate, map and initialise a new channel file. */
static int init_channel(struct shm_chan *ch, int fd, const dmaq_options *o)
{
    struct shm_meta m = {
        .magic = SHM_MAGIC,
        .layout_version = SHM_LAYOUT_VERSION,
        .ring_offset = SHM_RING_OFFSET,
        .kind = o->kind,
        .policy = o->policy,
        .capacity = o->capacity,
        .max_message = o->max_message,
        .file_size = SHM_RING_OFFSET + o->capacity,
        .salt = random_salt(),
        .pub_slots = DMAQ_MAX_PUBLISHERS,
        .sub_slots = DMAQ_MAX_SUBSCRIBERS,
        .creator_pid = getpid(),
        .mode = o->mode,
        .creator_start = dmaq__proc_start_time(getpid()),
        .created_ns = dmaq__now_ns(CLOCK_REALTIME),
    };
    /* open() applies the umask; the caller asked for exactly this mode. */
    if (fchmod(fd, o->mode) < 0)
        return errno_to_dmaq(errno, "creating", ch);
    if (ftruncate(fd, (off_t)m.file_size) < 0)
        return errno == EFBIG || errno == ENOSPC ? no_room(ch, m.file_size, m.capacity)
                                                 : errno_to_dmaq(errno, "creating", ch);
    /* Allocate every page now: on a full tmpfs (Docker's 64 MiB /dev/shm)
     * this fails with ENOSPC here, instead of a SIGBUS at first touch. */
    int err = allocate_pages(fd, m.file_size);
    if (err == ENOSPC || err == EFBIG) {
        (void)!ftruncate(fd, 0); /* give back the pieces that fitted before saying what is free */
        return no_room(ch, m.file_size, m.capacity);
    }
    if (err && err != EOPNOTSUPP && err != EINVAL)
        return errno_to_dmaq(err, "creating", ch);
    int rc = map_fd(ch, fd, m.file_size, o->flags, "creating");
    if (rc < 0)
        return rc;
    struct shm_header *h = ch->hdr;
    h->meta = m;
    h->checksum = meta_checksum(&m);
    atomic_store_explicit(&h->next_pub_id, 1, memory_order_relaxed);
    fill_view(ch, &m);
    atomic_store_explicit(&h->state, SHM_READY, memory_order_release);
    return 0;
}

/* Create the channel: build it completely under a private name, then move
 * it into place only if nobody else did meanwhile. So the channel's name
 * never shows a half-made file, whenever the creator is killed. Returns 0
 * (ch->fd set), RETRY if another process created it first, or an error. */
static int create_channel(struct shm_chan *ch, const dmaq_options *o)
{
    static _Atomic unsigned tmp_counter; /* threads of one process creating at once */
    sweep_dead_tmp(ch->dir);
    pid_t pid = getpid();
    char tmp[sizeof ch->path + 64];
    snprintf(tmp, sizeof tmp, "%s/" TMP_PREFIX "%llu.%d.%llu.%u.%s", ch->dir, (unsigned long long)dmaq__pid_ns(), (int)pid,
             (unsigned long long)dmaq__proc_start_time(pid), atomic_fetch_add(&tmp_counter, 1), ch->name);
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, o->mode);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return dmaq_error_set(DMAQ_ENOENT, "creating channel '%s': directory %s does not exist", ch->name,
                                  ch->dir);
        return errno_to_dmaq(errno, "creating", ch);
    }
    int rc = init_channel(ch, fd, o);
    if (rc == 0) {
        /* In use from the moment it has its name (see dmaq_channel_gc). */
        flock(fd, LOCK_SH);
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, ch->path, RENAME_NOREPLACE) == 0) {
            ch->fd = fd;
            return 0;
        }
        int err = errno;
        if (err == EINVAL || err == ENOSYS) /* a file system without RENAME_NOREPLACE */
            err = link(tmp, ch->path) == 0 ? 0 : errno;
        rc = err == 0 ? 0 : err == EEXIST ? RETRY : errno_to_dmaq(err, "creating", ch);
    }
    unlink(tmp);
    if (rc == 0) {
        ch->fd = fd;
        return 0;
    }
    close(fd);
    shm_chan_close(ch);
    return rc;
}

/* A non-zero magic that is not ours: somebody else's file, not a creation
 * in progress. */
static bool foreign_magic(const struct shm_header *h, ssize_t n)
{
    return (size_t)n >= sizeof(uint64_t) && h->meta.magic != 0 && h->meta.magic != SHM_MAGIC;
}

/* What a half-made channel file says about its creation. */
enum creation { CREATOR_UNKNOWN, CREATOR_ALIVE, CREATOR_DEAD };

static enum creation creation_of(const struct shm_header *h, ssize_t n)
{
    if ((size_t)n < offsetof(struct shm_meta, creator_start) + sizeof h->meta.creator_start ||
        h->meta.magic != SHM_MAGIC || h->meta.creator_pid <= 0)
        return CREATOR_UNKNOWN;
    return dmaq__proc_alive(h->meta.creator_pid, h->meta.creator_start) ? CREATOR_ALIVE : CREATOR_DEAD;
}

/* Unlink the file open as `fd` if it is still the one at ch->path and nobody
 * holds it. Returns RETRY. */
static int remove_abandoned(struct shm_chan *ch, int fd)
{
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 && same_file(fd, ch->path))
        unlink(ch->path);
    return RETRY;
}

/* Read and check the header of an existing channel (waiting a bounded time
 * for one whose creator is alive or unknown), lock it shared, and map it.
 * A half-made file whose creator died is removed when the caller may create
 * the channel. Returns 0, RETRY or an error. */
static int open_existing(struct shm_chan *ch, int fd, const dmaq_options *o, bool may_create)
{
    uint64_t deadline = dmaq__mono_ns() + CREATE_WAIT_NS;
    struct shm_header h;
    struct stat st;
    for (;;) {
        if (fstat(fd, &st) < 0)
            return errno_to_dmaq(errno, "opening", ch);
        if (!S_ISREG(st.st_mode))
            return dmaq_error_set(DMAQ_ENOTCHAN, "%s is not a regular file, so not a dmaq channel", ch->path);
        ssize_t n = pread(fd, &h, sizeof h, 0);
        if (n < 0)
            return errno_to_dmaq(errno, "opening", ch);
        if ((size_t)n == sizeof h && atomic_load(&h.state) == SHM_READY)
            break;
        /* A non-zero wrong magic is somebody else's file, not a creation in
         * progress: say so at once. */
        if (foreign_magic(&h, n))
            return validate_meta(&h.meta, h.checksum, (uint64_t)st.st_size, ch);
        enum creation c = creation_of(&h, n);
        bool waited = dmaq__mono_ns() > deadline;
        if (c == CREATOR_DEAD || (c == CREATOR_UNKNOWN && waited)) {
            if (may_create)
                return remove_abandoned(ch, fd);
            return dmaq_error_set(DMAQ_ECORRUPT,
                                  "channel '%s' was never completely created and its creator is gone; an "
                                  "open that may create it will make it anew (or run dmaq gc)",
                                  ch->name);
        }
        if (waited)
            return dmaq_error_set(DMAQ_ECORRUPT,
                                  "channel '%s' was never completely created (%zd header bytes, state %u); its "
                                  "creator (pid %d) is still running but has not finished in %llu s",
                                  ch->name, n, (size_t)n == sizeof h ? atomic_load(&h.state) : 0u,
                                  (int)h.meta.creator_pid, CREATE_WAIT_NS / 1000000000ull);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    int rc = validate_meta(&h.meta, h.checksum, (uint64_t)st.st_size, ch);
    if (rc == 0)
        rc = check_compatible(&h.meta, o, ch->name);
    if (rc < 0)
        return rc;
    /* Held for the handle's life, so dmaq_channel_gc sees the channel in
     * use; the kernel drops it when the process dies. */
    int locked;
    while ((locked = flock(fd, LOCK_SH)) < 0 && errno == EINTR) /* a signal while dmaq gc holds it */
        ;
    if (locked < 0)
        return errno_to_dmaq(errno, "opening", ch);
    if (!same_file(fd, ch->path))
        return RETRY; /* removed (dmaq gc, unlink) between our open and our lock */
    rc = map_fd(ch, fd, h.meta.file_size, o->flags, "opening");
    if (rc < 0)
        return rc;
    /* Use the copy we validated, not the live header, from here on. */
    fill_view(ch, &h.meta);
    ch->fd = fd;
    return 0;
}

int shm_chan_open(struct shm_chan *ch, const char *address, const dmaq_options *opts)
{
    memset(ch, 0, sizeof *ch);
    ch->fd = -1;
    int rc = resolve_location(ch, address, opts->shm_dir);
    if (rc < 0)
        return rc;
    dmaq_options o;
    rc = resolve_create_options(opts, &o, ch->name);
    if (rc < 0)
        return rc;
    bool may_create = !(o.flags & DMAQ_OPEN_NO_CREATE);
    for (int attempt = 0; attempt < 100; attempt++) {
        if (attempt > 1) {
            struct timespec ts = {0, 1000000}; /* somebody else is removing or creating it */
            nanosleep(&ts, NULL);
        }
        int fd = open(ch->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
            if (errno == ENOENT && may_create)
                rc = create_channel(ch, &o);
            else
                rc = errno_to_dmaq(errno, "opening", ch);
        } else {
            /* Compare against what the caller asked for, not the defaults. */
            rc = open_existing(ch, fd, opts, may_create);
            if (rc != 0) {
                close(fd);
                shm_chan_close(ch);
            }
        }
        if (rc != RETRY)
            return rc;
    }
    return dmaq_error_set(DMAQ_ESYS, "channel '%s' keeps disappearing while it is opened", ch->name);
}

void shm_chan_close(struct shm_chan *ch)
{
    if (ch->hdr)
        munmap(ch->hdr, ch->map_len);
    ch->hdr = NULL;
    if (ch->fd >= 0)
        close(ch->fd);
    ch->fd = -1;
}

int shm_slot_claim(struct shm_slot *slots, unsigned n, _Atomic uint32_t *hwm, const char *what, const char *name)
{
    pid_t pid = getpid();
    uint64_t start = dmaq__proc_start_time(pid);
    for (unsigned i = 0; i < n; i++) {
        uint32_t expected = SLOT_FREE;
        if (!atomic_compare_exchange_strong(&slots[i].state, &expected, SLOT_CLAIMING))
            continue;
        slots[i].pid = pid;
        slots[i].start_time = start;
        slots[i].pid_ns = dmaq__pid_ns();
        atomic_store(&slots[i].count, 0);
        atomic_store(&slots[i].lost, 0);
        uint32_t h = atomic_load(hwm);
        while (h < i + 1 && !atomic_compare_exchange_weak(hwm, &h, i + 1))
            ;
        return (int)i;
    }
    return dmaq_error_set(DMAQ_ELIMIT, "channel '%s' already has %u %s", name, n, what);
}

int shm_channel_unlink(const char *address)
{
    struct shm_chan ch = {.fd = -1};
    int rc = resolve_location(&ch, address, NULL);
    if (rc < 0)
        return rc;
    if (unlink(ch.path) < 0)
        return errno_to_dmaq(errno, "removing", &ch);
    return 0;
}

/* Is the channel file `name` in `dir` garbage: complete with no handle open
 * on it anywhere, or half made by a creator that is gone? Never for a file
 * that is not a dmaq channel. Takes the file's lock, so that nobody can open
 * it between the verdict and the unlink. */
static bool gc_one(const char *dir, const char *name)
{
    struct shm_chan ch = {.fd = -1};
    char address[SHM_DIR_MAX + DMAQ_NAME_MAX + 2];
    snprintf(address, sizeof address, "%s/%s", dir, name);
    if (resolve_location(&ch, address, NULL) < 0)
        return false;
    int fd = open(ch.path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return false;
    bool garbage = false;
    struct shm_header h;
    struct stat st;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 && same_file(fd, ch.path) && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        ssize_t n = pread(fd, &h, sizeof h, 0);
        if ((size_t)n == sizeof h && atomic_load(&h.state) == SHM_READY)
            garbage = h.meta.magic == SHM_MAGIC; /* nobody holds the lock: no handle is open */
        else if (n >= 0 && !foreign_magic(&h, n)) {
            enum creation c = creation_of(&h, n);
            uint64_t age_ns = (uint64_t)(time(NULL) - st.st_mtime) * 1000000000ull;
            garbage = c == CREATOR_DEAD || (c == CREATOR_UNKNOWN && age_ns > CREATE_WAIT_NS);
        }
        if (garbage)
            garbage = unlink(ch.path) == 0;
    }
    close(fd);
    return garbage;
}

DMAQ_API int dmaq_channel_gc(const char *shm_dir)
{
    struct shm_chan ch = {.fd = -1};
    int rc = resolve_location(&ch, "gc", shm_dir); /* a placeholder name: only the directory is wanted */
    if (rc < 0)
        return rc;
    DIR *d = opendir(ch.dir);
    if (!d)
        return errno == ENOENT ? dmaq_error_set(DMAQ_ENOENT, "directory %s does not exist", ch.dir)
                               : errno_to_dmaq(errno, "collecting", &ch);
    int removed = sweep_dead_tmp(ch.dir);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, SHM_PREFIX, strlen(SHM_PREFIX)) == 0)
            removed += gc_one(ch.dir, e->d_name + strlen(SHM_PREFIX));
    closedir(d);
    return removed;
}

int shm_channel_stat(const char *address, dmaq_stat *stat, dmaq_sub_stat *subs, size_t subs_cap)
{
    struct shm_chan ch;
    dmaq_options o = DMAQ_OPTIONS_INIT;
    o.flags = DMAQ_OPEN_NO_CREATE;
    int rc = shm_chan_open(&ch, address, &o);
    if (rc < 0)
        return rc;
    struct shm_header *h = ch.hdr;
    struct shm_write w = shm_write_load(h);
    uint64_t own_ns = dmaq__pid_ns();
    memset((char *)stat + sizeof stat->size, 0, sizeof *stat - sizeof stat->size);
    stat->kind = ch.kind;
    stat->policy = ch.policy;
    stat->mode = h->meta.mode;
    stat->capacity = ch.capacity;
    stat->max_message = ch.max_message;
    stat->published = w.seq - atomic_load(&h->aborted);
    stat->creator_pid = h->meta.creator_pid;
    if (!shm_has_live_peer(&ch))
        stat->flags |= DMAQ_STAT_STALE;

    uint32_t pub_hwm = atomic_load(&h->pub_hwm), sub_hwm = atomic_load(&h->sub_hwm);
    struct shm_slot *ps = shm_pub_slots(h), *ss = shm_sub_slots(h);
    for (uint32_t i = 0; i < pub_hwm && i < DMAQ_MAX_PUBLISHERS; i++)
        stat->publishers += atomic_load(&ps[i].state) == SLOT_ACTIVE;

    uint64_t oldest = w.pos;
    uint64_t queued = 0;
    if (ch.kind == DMAQ_KIND_QUEUE) {
        oldest = atomic_load(&h->tail);
        uint64_t claim = atomic_load(&h->rd_claim);
        struct shm_record *r = shm_rec(&ch, claim);
        if (claim < w.pos && atomic_load(&r->tag) == (claim ^ ch.salt) && r->seq <= w.seq)
            queued = w.seq - r->seq;
    }
    unsigned n = 0;
    for (uint32_t i = 0; i < sub_hwm && i < DMAQ_MAX_SUBSCRIBERS; i++) {
        if (atomic_load(&ss[i].state) != SLOT_ACTIVE)
            continue;
        uint64_t pos = atomic_load(&ss[i].pos), next = atomic_load(&ss[i].next_seq);
        if (ch.kind == DMAQ_KIND_BROADCAST && pos < oldest)
            oldest = pos;
        if (n < subs_cap) {
            dmaq_sub_stat *s = &subs[n];
            s->received = atomic_load(&ss[i].count);
            s->lost = atomic_load(&ss[i].lost);
            s->pid = ss[i].pid;
            s->alive = shm_slot_alive(&ss[i], own_ns);
            if (ch.kind == DMAQ_KIND_QUEUE) {
                s->lag = queued;
                s->lag_bytes = w.pos - atomic_load(&h->rd_claim);
            } else {
                s->lag = w.seq > next ? w.seq - next : 0;
                s->lag_bytes = w.pos > pos ? w.pos - pos : 0;
            }
        }
        n++;
    }
    stat->subscribers = n;
    uint64_t used = w.pos - oldest;
    stat->bytes_used = used > ch.capacity ? ch.capacity : used;
    if (ch.policy == DMAQ_POLICY_OVERWRITE)
        stat->bytes_used = w.pos < ch.capacity ? w.pos : ch.capacity;
    shm_chan_close(&ch);
    return (int)n;
}
