using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Dmaq;

/// <summary>The C ABI of core/include/dmaq/dmaq.h, blittable signatures only.</summary>
internal static unsafe partial class Native
{
    private const string Lib = "dmaq";

    [StructLayout(LayoutKind.Sequential)]
    internal struct Options
    {
        public uint Size, Kind, Policy, Flags;
        public ulong Capacity, MaxMessage;
        public uint Mode, Start;
        public long SpinNs;
        public byte* ShmDir;
        public long PeerTimeoutNs;
        public byte* Key;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct Lease
    {
        public byte* Data;
        public ulong Len, Seq, TimestampNs;
        public uint PublisherId, Flags;
        public ulong Lost;
        public fixed ulong Opaque[4];
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct Stat
    {
        public uint Size, Kind, Policy, Mode;
        public ulong Capacity, MaxMessage, BytesUsed, Published;
        public uint Publishers, Subscribers;
        public int CreatorPid;
        public uint Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct SubStat
    {
        public ulong Received, Lost, Lag, LagBytes;
        public int Pid;
        public uint Alive;
    }

    internal const int ETIMEDOUT = -7, EAGAIN = -6, ELOST = -8, EMSGSIZE = -5, EOVERWRITTEN = -9;
    internal const uint OpenNoCreate = 0x1, LeaseRedelivered = 0x1, LeaseOverwritten = 0x2, StatStale = 0x1;
    internal const int BatchMax = 256; // DMAQ_BATCH_MAX
    internal const long NowBytes = 64 << 10;

    [LibraryImport(Lib, EntryPoint = "dmaq_version")]
    internal static partial byte* Version();
    [LibraryImport(Lib, EntryPoint = "dmaq_strerror")]
    internal static partial byte* StrError(int code);
    [LibraryImport(Lib, EntryPoint = "dmaq_last_error")]
    internal static partial byte* LastError();
    [LibraryImport(Lib, EntryPoint = "dmaq_options_init")]
    internal static partial void OptionsInit(Options* opts);
    [LibraryImport(Lib, EntryPoint = "dmaq_struct_size")]
    internal static partial nuint StructSize(int which);

    [LibraryImport(Lib, EntryPoint = "dmaq_pub_open")]
    internal static partial int PubOpen(byte* uri, Options* opts, nint* handle);
    [LibraryImport(Lib, EntryPoint = "dmaq_pub_close")]
    internal static partial int PubClose(nint pub);
    [LibraryImport(Lib, EntryPoint = "dmaq_pub_id"), SuppressGCTransition]
    internal static partial uint PubId(nint pub);
    // The calls that may wait (and so make the GC transition) are each
    // wrapped in a method of its own that is never inlined: a method that
    // holds such a call sets up a transition frame on every call, whichever
    // branch it takes, and the Try* paths beside these would pay for it.
    [LibraryImport(Lib, EntryPoint = "dmaq_pub_reserve")]
    private static partial int PubReserveImport(nint pub, nuint len, Lease *lease, long timeoutNs);
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static int PubReserve(nint pub, nuint len, Lease *lease,
                                   long timeoutNs) => PubReserveImport(pub, len, lease, timeoutNs);
    // Committing and aborting never wait: no GC transition.
    [LibraryImport(Lib, EntryPoint = "dmaq_pub_commit"), SuppressGCTransition]
    internal static partial int PubCommit(nint pub, Lease* lease, nuint used);
    [LibraryImport(Lib, EntryPoint = "dmaq_pub_abort"), SuppressGCTransition]
    internal static partial int PubAbort(nint pub, Lease* lease);
    [LibraryImport(Lib, EntryPoint = "dmaq_pub_send")]
    private static partial int PubSendImport(nint pub, byte *data, nuint len, long timeoutNs);
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static int PubSend(nint pub, byte *data, nuint len, long timeoutNs) => PubSendImport(pub, data, len,
                                                                                                  timeoutNs);

    [LibraryImport(Lib, EntryPoint = "dmaq_pub_send_many")]
    private static partial int PubSendManyImport(nint pub, byte *data, nuint *lens, nuint count, nuint *sent,
                                                 long timeoutNs);
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static int PubSendMany(nint pub, byte *data, nuint *lens, nuint count, nuint *sent,
                                    long timeoutNs) => PubSendManyImport(pub, data, lens, count, sent, timeoutNs);

    [LibraryImport(Lib, EntryPoint = "dmaq_sub_open")]
    internal static partial int SubOpen(byte* uri, Options* opts, nint* handle);
    [LibraryImport(Lib, EntryPoint = "dmaq_sub_close")]
    internal static partial int SubClose(nint sub);
    [LibraryImport(Lib, EntryPoint = "dmaq_sub_peek")]
    private static partial int SubPeekImport(nint sub, Lease *lease, long timeoutNs);
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static int SubPeek(nint sub, Lease *lease, long timeoutNs) => SubPeekImport(sub, lease, timeoutNs);
    [LibraryImport(Lib, EntryPoint = "dmaq_sub_release")]
    private static partial int SubReleaseImport(nint sub, Lease *lease);
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static int SubRelease(nint sub, Lease *lease) => SubReleaseImport(sub, lease);
    [LibraryImport(Lib, EntryPoint = "dmaq_sub_recv")]
    private static partial int SubRecvImport(nint sub, byte *buf, nuint cap, nuint *len, long timeoutNs);
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static int SubRecv(nint sub, byte *buf, nuint cap, nuint *len,
                                long timeoutNs) => SubRecvImport(sub, buf, cap, len, timeoutNs);

    [LibraryImport(Lib, EntryPoint = "dmaq_sub_recv_many")]
    private static partial int SubRecvManyImport(nint sub, byte *buf, nuint cap, nuint *lens, nuint maxCount,
                                                 nuint *count, long timeoutNs);
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static int SubRecvMany(nint sub, byte *buf, nuint cap, nuint *lens, nuint maxCount, nuint *count,
                                    long timeoutNs) => SubRecvManyImport(sub, buf, cap, lens, maxCount, count,
                                                                         timeoutNs);
    [LibraryImport(Lib, EntryPoint = "dmaq_sub_peek_many")]
    private static partial int SubPeekManyImport(nint sub, Lease *leases, nuint maxCount, nuint *count,
                                                 long timeoutNs);
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static int SubPeekMany(nint sub, Lease *leases, nuint maxCount, nuint *count,
                                    long timeoutNs) => SubPeekManyImport(sub, leases, maxCount, count, timeoutNs);
    [LibraryImport(Lib, EntryPoint = "dmaq_sub_release_many")]
    private static partial int SubReleaseManyImport(nint sub, Lease *leases, nuint count);
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static int SubReleaseMany(nint sub, Lease *leases, nuint count) => SubReleaseManyImport(sub, leases,
                                                                                                     count);

    // The same calls with a zero timeout never wait ("try once"): the Try*
    // methods use these, without the GC transition a wait would need. A
    // subscriber's calls do so only on shm:// channels: over a network one,
    // peek, recv and release may read or write its connection.
    [LibraryImport(Lib, EntryPoint = "dmaq_pub_send"), SuppressGCTransition]
    internal static partial int PubSendNow(nint pub, byte* data, nuint len, long zero);
    [LibraryImport(Lib, EntryPoint = "dmaq_sub_recv"), SuppressGCTransition]
    internal static partial int SubRecvNow(nint sub, byte* buf, nuint cap, nuint* len, long zero);
    [LibraryImport(Lib, EntryPoint = "dmaq_sub_peek"), SuppressGCTransition]
    internal static partial int SubPeekNow(nint sub, Lease* lease, long zero);
    [LibraryImport(Lib, EntryPoint = "dmaq_sub_release"), SuppressGCTransition]
    internal static partial int SubReleaseNow(nint sub, Lease* lease);
    [LibraryImport(Lib, EntryPoint = "dmaq_pub_reserve"), SuppressGCTransition]
    internal static partial int PubReserveNow(nint pub, nuint len, Lease* lease, long zero);
    // Batches too, while they copy at most NowBytes: a call that copies
    // much longer would hold off the GC for as long.
    [LibraryImport(Lib, EntryPoint = "dmaq_pub_send_many"), SuppressGCTransition]
    internal static partial int PubSendManyNow(nint pub, byte* data, nuint* lens, nuint count, nuint* sent, long zero);
    [LibraryImport(Lib, EntryPoint = "dmaq_sub_recv_many"), SuppressGCTransition]
    internal static partial int SubRecvManyNow(nint sub, byte* buf, nuint cap, nuint* lens, nuint maxCount,
                                               nuint* count, long zero);
    [LibraryImport(Lib, EntryPoint = "dmaq_sub_peek_many"), SuppressGCTransition]
    internal static partial int SubPeekManyNow(nint sub, Lease* leases, nuint maxCount, nuint* count, long zero);
    [LibraryImport(Lib, EntryPoint = "dmaq_sub_release_many"), SuppressGCTransition]
    internal static partial int SubReleaseManyNow(nint sub, Lease* leases, nuint count);

    [LibraryImport(Lib, EntryPoint = "dmaq_channel_stat")]
    internal static partial int ChannelStat(byte* uri, Stat* stat, SubStat* subs, nuint cap);
    [LibraryImport(Lib, EntryPoint = "dmaq_channel_unlink")]
    internal static partial int ChannelUnlink(byte* uri);
    [LibraryImport(Lib, EntryPoint = "dmaq_channel_gc")]
    internal static partial int ChannelGc(byte* dir);

    /// <summary>A NUL-terminated UTF-8 copy of <paramref name="s"/>, on the stack when short.</summary>
    internal static byte[] Utf8(string s)
    {
        var bytes = new byte[System.Text.Encoding.UTF8.GetByteCount(s) + 1];
        System.Text.Encoding.UTF8.GetBytes(s, bytes);
        return bytes;
    }

    internal static string Text(byte* p) => p == null ? "" : Marshal.PtrToStringUTF8((nint)p) ?? "";

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static long TimeoutNs(TimeSpan? t) =>
        t is null ? -1 : t.Value <= TimeSpan.Zero ? 0 : (long)Math.Min(t.Value.Ticks * 100.0, long.MaxValue);
}
