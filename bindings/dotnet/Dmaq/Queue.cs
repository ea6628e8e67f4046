using System.Runtime.InteropServices;

namespace Dmaq;

/// <summary>Channel kinds.</summary>
public enum ChannelKind
{
    /// <summary>Accept what exists; create a broadcast channel otherwise.</summary>
    Any = 0,
    /// <summary>Each message to exactly one subscriber (a work queue).</summary>
    Queue = 1,
    /// <summary>Each message to every subscriber.</summary>
    Broadcast = 2,
}

/// <summary>What a full ring does.</summary>
public enum OverflowPolicy
{
    /// <summary>Accept what exists; block when creating.</summary>
    Any = 0,
    /// <summary>Publishers wait for space.</summary>
    Block = 1,
    /// <summary>Broadcast only: publishers never wait; lapped subscribers lose messages.</summary>
    Overwrite = 2,
}

/// <summary>
/// A channel, described the way Cloudtoid.Interprocess describes a queue: a
/// name (the channel is <c>shm://queueName</c>) and a capacity in bytes,
/// plus what Cloudtoid does not have: kind, policy and maximum message size.
/// </summary>
/// <param name="queueName">The channel's name, without the <c>shm://</c> scheme.</param>
/// <param name="bytesCapacity">Ring bytes: a power of two, at least 4096 (0: the channel's, or 1 MiB).</param>
public sealed class QueueOptions(string queueName, long bytesCapacity = 0)
{
    /// <summary>The channel's name.</summary>
    public string QueueName { get; } = queueName ?? throw new ArgumentNullException(nameof(queueName));
    /// <summary>Ring bytes.</summary>
    public long BytesCapacity { get; } = bytesCapacity;
    /// <summary>Queue (the default, as in Cloudtoid) or broadcast.</summary>
    public ChannelKind Kind { get; init; } = ChannelKind.Queue;
    /// <summary>Block (the default) or overwrite.</summary>
    public OverflowPolicy Policy { get; init; } = OverflowPolicy.Block;
    /// <summary>The largest message in bytes (0: the channel's, or a quarter of the capacity).</summary>
    public long MaxMessageSize { get; init; }
    /// <summary>The directory of the channel files (null: $DMAQ_SHM_DIR, else /dev/shm).</summary>
    public string? Directory { get; init; }
    /// <summary>How long waits spin before they sleep (null: 50 µs).</summary>
    public TimeSpan? Spin { get; init; }
    /// <summary>A network endpoint such as <c>tcp://host:7000</c>: the channel is then
    /// <c>tcp://host:7000/queueName</c> instead of a shared-memory one (null: shared memory).</summary>
    public string? Endpoint { get; init; }
    /// <summary>Network channels: this handle hosts the channel and listens at the endpoint;
    /// otherwise it connects to the process that does.</summary>
    public bool Bind { get; init; }
    /// <summary>Network channels: the pre-shared key peers must prove they know (null: none).</summary>
    public string? Key { get; init; }
    /// <summary>Network channels, with a key: a binding handle seals every payload; a connecting
    /// one refuses a channel that does not.</summary>
    public bool Encrypt { get; init; }
    /// <summary>Network channels, binding: compress payloads of 512 bytes or more with zstd.</summary>
    public bool Compress { get; init; }
    /// <summary>Publishers: stamp each message with the time of its commit (the default). Off,
    /// <see cref="ReadLease.TimestampNs"/> is 0 and small sends are cheaper where reading the clock is slow.</summary>
    public bool Timestamps { get; init; } = true;
    /// <summary>Network channels: silence after which a peer counts as gone (null: 5 s).</summary>
    public TimeSpan? PeerTimeout { get; init; }
    /// <summary>The channel's URI.</summary>
    public string Uri => Endpoint is not null ? $"{Endpoint.TrimEnd('/')}/{QueueName}"
                       : Directory is null ? "shm://" + QueueName : $"shm://{Directory}/{QueueName}";

    /// <summary>Options for the channel at <paramref name="uri"/> (<c>shm://name</c>,
    /// <c>shm:///dir/name</c> or <c>tcp://host:port/name</c>), accepting its kind and policy.</summary>
    public static QueueOptions FromUri(string uri)
    {
        int slash = uri.LastIndexOf('/');
        if (!uri.Contains("://") || slash < 0)
            throw new ArgumentException($"'{uri}' is not a channel URI (expected shm://NAME or tcp://HOST:PORT/NAME)");
        string name = uri[(slash + 1)..];
        if (uri.StartsWith("shm://", StringComparison.Ordinal))
        {
            string rest = uri["shm://".Length..];
            return new QueueOptions(name) { Kind = ChannelKind.Any, Policy = OverflowPolicy.Any,
                                            Directory = rest.Contains('/') ? rest[..rest.LastIndexOf('/')] : null };
        }
        return new QueueOptions(name) { Kind = ChannelKind.Any, Policy = OverflowPolicy.Any, Endpoint = uri[..slash] };
    }

    private const uint OpenBind = 0x4, OpenEncrypt = 0x8, OpenCompress = 0x10, OpenNoTimestamps = 0x40;

    /// <summary>The C options; <paramref name="key"/> is the key's UTF-8, pinned by the caller
    /// for the open call.</summary>
    internal unsafe Native.Options ToNative(byte* key)
    {
        Native.Options o;
        Native.OptionsInit(&o);
        o.Kind = (uint)Kind;
        o.Policy = (uint)Policy;
        o.Capacity = (ulong)BytesCapacity;
        o.MaxMessage = (ulong)MaxMessageSize;
        o.SpinNs = Spin is null ? -1 : (long)(Spin.Value.Ticks * 100);
        o.Flags |= (Bind ? OpenBind : 0) | (Encrypt ? OpenEncrypt : 0) | (Compress ? OpenCompress : 0) |
                   (Timestamps ? 0 : OpenNoTimestamps);
        o.Key = key;
        o.PeerTimeoutNs = PeerTimeout is null ? 0 : (long)(PeerTimeout.Value.Ticks * 100);
        return o;
    }
}

/// <summary>Makes publishers and subscribers, as Cloudtoid's QueueFactory does.</summary>
public sealed class QueueFactory
{
    /// <summary>A publisher on the channel, created from <paramref name="options"/> if it does not exist.</summary>
    /// <exception cref="DmaqException">What was wrong, from the C library.</exception>
    public Publisher CreatePublisher(QueueOptions options) => new(options);

    /// <summary>A subscriber on the channel, created from <paramref name="options"/> if it does not exist.</summary>
    /// <exception cref="DmaqException">What was wrong, from the C library.</exception>
    public Subscriber CreateSubscriber(QueueOptions options) => new(options);
}

/// <summary>Channel-wide operations.</summary>
public static class Channel
{
    /// <summary>The version of the C library ("0.1.0").</summary>
    public static unsafe string LibraryVersion => Native.Text(Native.Version());

    /// <summary>Removes the channel's name; open handles keep working.</summary>
    public static unsafe void Unlink(string uri)
    {
        fixed (byte* u = Native.Utf8(uri))
            DmaqException.Check(Native.ChannelUnlink(u));
    }

    /// <summary>Removes the stale channels (no live process attached) of a directory; returns how many.</summary>
    public static unsafe int CollectGarbage(string? directory = null)
    {
        fixed (byte* d = directory is null ? null : Native.Utf8(directory))
        {
            int rc = Native.ChannelGc(d);
            DmaqException.Check(rc);
            return rc;
        }
    }

    /// <summary>Describes the channel at <paramref name="uri"/>.</summary>
    /// <exception cref="DmaqNotFoundException">It does not exist.</exception>
    public static unsafe ChannelStat Stat(string uri)
    {
        Native.Stat st = default;
        st.Size = (uint)sizeof(Native.Stat);
        fixed (byte* u = Native.Utf8(uri))
            DmaqException.Check(Native.ChannelStat(u, &st, null, 0));
        return new ChannelStat((ChannelKind)st.Kind, (OverflowPolicy)st.Policy, (long)st.Capacity, (long)st.MaxMessage,
                               (int)st.Publishers, (int)st.Subscribers, (long)st.Published,
                               (st.Flags & Native.StatStale) != 0);
    }
}

/// <summary>A channel's figures (from <see cref="Channel.Stat"/>).</summary>
/// <param name="Kind">Queue or broadcast.</param>
/// <param name="Policy">Block or overwrite.</param>
/// <param name="Capacity">Ring bytes.</param>
/// <param name="MaxMessage">The largest message.</param>
/// <param name="Publishers">Publishers attached now.</param>
/// <param name="Subscribers">Subscribers attached now.</param>
/// <param name="Published">Messages committed since creation.</param>
/// <param name="Stale">No live process is attached.</param>
public sealed record ChannelStat(ChannelKind Kind, OverflowPolicy Policy, long Capacity, long MaxMessage, int Publishers,
                                 int Subscribers, long Published, bool Stale);

/// <summary>Owns a C handle; closes it exactly once (double dispose is harmless).</summary>
internal sealed class DmaqHandle : SafeHandle
{
    private readonly bool _publisher;
    private DmaqHandle(nint handle, bool publisher) : base(0, true)
    {
        SetHandle(handle);
        _publisher = publisher;
    }

    /// <summary>Opens a publisher or subscriber on the channel <paramref name="options"/> describe.</summary>
    public static unsafe DmaqHandle Open(QueueOptions options, bool publisher)
    {
        nint h;
        fixed (byte* uri = Native.Utf8(options.Uri))
        fixed (byte* key = options.Key is null ? null : Native.Utf8(options.Key))
        {
            var o = options.ToNative(key);
            DmaqException.Check(publisher ? Native.PubOpen(uri, &o, &h) : Native.SubOpen(uri, &o, &h));
        }
        return new DmaqHandle(h, publisher);
    }

    /// <summary>The C handle; ObjectDisposedException (naming <paramref name="owner"/>) once closed.</summary>
    public nint Get(string owner) => IsClosed ? throw new ObjectDisposedException(owner) : handle;
    public override bool IsInvalid => handle == 0;
    protected override bool ReleaseHandle()
    {
        if (_publisher)
            Native.PubClose(handle);
        else
            Native.SubClose(handle);
        return true;
    }
}
