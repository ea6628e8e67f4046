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

    internal const int ETIMEDOUT = -7, EAGAIN = -6, ELOST = -8, EMSGSIZE = -5;
    internal const uint OpenNoCreate = 0x1, LeaseRedelivered = 0x1, StatStale = 0x1;

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
    [LibraryImport(Lib, EntryPoint = "dmaq_pub_reserve")]
    internal static partial int PubReserve(nint pub, nuint len, Lease* lease, long timeoutNs);
    // Committing and aborting never wait: no GC transition.
    [LibraryImport(Lib, EntryPoint = "dmaq_pub_commit"), SuppressGCTransition]
    internal static partial int PubCommit(nint pub, Lease* lease, nuint used);
    [LibraryImport(Lib, EntryPoint = "dmaq_pub_abort"), SuppressGCTransition]
    internal static partial int PubAbort(nint pub, Lease* lease);
    [LibraryImport(Lib, EntryPoint = "dmaq_pub_send")]
    internal static partial int PubSend(nint pub, byte* data, nuint len, long timeoutNs);

    [LibraryImport(Lib, EntryPoint = "dmaq_sub_open")]
    internal static partial int SubOpen(byte* uri, Options* opts, nint* handle);
    [LibraryImport(Lib, EntryPoint = "dmaq_sub_close")]
    internal static partial int SubClose(nint sub);
    [LibraryImport(Lib, EntryPoint = "dmaq_sub_peek")]
    internal static partial int SubPeek(nint sub, Lease* lease, long timeoutNs);
    [LibraryImport(Lib, EntryPoint = "dmaq_sub_release")]
    internal static partial int SubRelease(nint sub, Lease* lease);
    [LibraryImport(Lib, EntryPoint = "dmaq_sub_recv")]
    internal static partial int SubRecv(nint sub, byte* buf, nuint cap, nuint* len, long timeoutNs);

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
