using System.Buffers;

namespace Dmaq;

/// <summary>
/// A publisher on a channel (from <see cref="QueueFactory.CreatePublisher"/>).
/// Used by one thread at a time; may move between threads between calls.
/// Dispose closes it; disposing twice is harmless.
/// </summary>
public sealed unsafe class Publisher : IDisposable
{
    private readonly DmaqHandle _handle;
    private Native.Lease _lease;
    private int _leaseGeneration; // odd while a reservation is outstanding

    /// <summary>The channel's URI.</summary>
    public string Uri { get; }

    internal Publisher(QueueOptions options)
    {
        Uri = options.Uri;
        _handle = DmaqHandle.Open(options, publisher: true);
    }

    private nint H => _handle.Get(nameof(Publisher));

    /// <summary>This publisher's id, as subscribers see it in <see cref="ReadLease.PublisherId"/>.</summary>
    public uint Id => Native.PubId(H);

    /// <summary>Publishes a copy of <paramref name="message"/> if there is room now.</summary>
    /// <returns>False if the ring is full (block policy).</returns>
    /// <exception cref="DmaqException">Another failure, e.g. <see cref="DmaqMessageTooLargeException"/>.</exception>
    public bool TryEnqueue(ReadOnlySpan<byte> message)
    {
        int rc;
        fixed (byte* p = message)
            rc = Native.PubSendNow(H, p, (nuint)message.Length, 0);
        if (rc == Native.EAGAIN || rc == Native.ETIMEDOUT)
            return false;
        DmaqException.Check(rc);
        return true;
    }

    /// <summary>
    /// Publishes a copy of <paramref name="message"/>, waiting for room as
    /// long as it takes; <paramref name="cancellation"/> ends the wait within 0.1 s.
    /// </summary>
    /// <exception cref="OperationCanceledException">The token was cancelled first.</exception>
    public void Enqueue(ReadOnlySpan<byte> message, CancellationToken cancellation = default)
    {
        if (TryEnqueue(message)) // the common case, without a GC transition
            return;
        fixed (byte* p = message)
            for (;;)
            {
                int rc = Native.PubSend(H, p, (nuint)message.Length, Slice.Ns(cancellation));
                if (!Slice.Again(rc, cancellation))
                    break;
            }
    }

    /// <summary>
    /// Reserves <paramref name="length"/> bytes in the ring to write a
    /// message in place (no copy): write through <see cref="WriteLease.Span"/>,
    /// then <see cref="WriteLease.Commit(int)"/>; disposing it uncommitted aborts it.
    /// </summary>
    /// <param name="length">Bytes to reserve, at most the channel's maximum message size.</param>
    /// <param name="timeout">How long to wait for room (null: forever).</param>
    /// <exception cref="DmaqTimeoutException">No room came in time.</exception>
    public WriteLease Reserve(int length, TimeSpan? timeout = null)
    {
        if (length < 0)
            throw new ArgumentOutOfRangeException(nameof(length));
        long timeoutNs = Native.TimeoutNs(timeout);
        int rc;
        fixed (Native.Lease* l = &_lease)
        {
            rc = Native.PubReserveNow(H, (nuint)length, l, 0); // the common case, without a GC transition
            if (rc == Native.EAGAIN && timeoutNs != 0)
                rc = Native.PubReserve(H, (nuint)length, l, timeoutNs);
        }
        DmaqException.Check(rc);
        return new WriteLease(this, ++_leaseGeneration);
    }

    internal Span<byte> LeaseSpan(int generation)
    {
        CheckLease(generation);
        return new Span<byte>(_lease.Data, (int)_lease.Len);
    }

    internal void EndLease(int generation, int used, bool commit)
    {
        CheckLease(generation);
        int rc;
        fixed (Native.Lease* l = &_lease)
        {
            if (commit && (used < 0 || (ulong)used > _lease.Len))
                throw new ArgumentOutOfRangeException(nameof(used), $"{used} is outside the {_lease.Len} bytes reserved");
            rc = commit ? Native.PubCommit(H, l, (nuint)used) : Native.PubAbort(H, l);
        }
        _leaseGeneration++;
        DmaqException.Check(rc);
    }

    internal bool LeaseOutstanding(int generation) => generation == _leaseGeneration && (generation & 1) == 1 && !_handle.IsClosed;

    internal int LeaseLength => (int)_lease.Len;

    private void CheckLease(int generation)
    {
        if (!LeaseOutstanding(generation))
            throw new ObjectDisposedException(nameof(WriteLease), "the reservation has been committed or aborted");
    }

    /// <summary>Closes the publisher, aborting an outstanding reservation.</summary>
    public void Dispose()
    {
        if ((_leaseGeneration & 1) == 1)
            _leaseGeneration++;
        _handle.Dispose();
    }
}

/// <summary>
/// A subscriber on a channel (from <see cref="QueueFactory.CreateSubscriber"/>).
/// Used by one thread at a time; may move between threads between calls.
/// Dispose closes it; disposing twice is harmless.
/// </summary>
public sealed unsafe class Subscriber : IDisposable
{
    private readonly DmaqHandle _handle;
    private Native.Lease _lease;
    private int _leaseGeneration;
    private byte[]? _scratch;
    private readonly bool _shm; // only shm:// calls that do not wait skip the GC transition (Native.cs)

    /// <summary>The channel's URI.</summary>
    public string Uri { get; }

    /// <summary>The channel's largest message in bytes.</summary>
    public int MaxMessageSize { get; }

    internal Subscriber(QueueOptions options)
    {
        Uri = options.Uri;
        _shm = !Uri.Contains("://", StringComparison.Ordinal) || Uri.StartsWith("shm://", StringComparison.Ordinal);
        _handle = DmaqHandle.Open(options, publisher: false);
        MaxMessageSize = (int)Channel.Stat(Uri).MaxMessage;
    }

    private nint H => _handle.Get(nameof(Subscriber));

    /// <summary>Copies the next message into <paramref name="buffer"/> if one is waiting.</summary>
    /// <param name="buffer">Where the message goes.</param>
    /// <param name="length">Its length.</param>
    /// <returns>False if none is waiting.</returns>
    /// <exception cref="DmaqMessageTooLargeException">It does not fit (<see cref="DmaqMessageTooLargeException.Needed"/>); it stays unread.</exception>
    /// <exception cref="DmaqLostException">The overwrite policy lapped this subscriber.</exception>
    public bool TryDequeue(Span<byte> buffer, out int length)
    {
        fixed (byte* p = buffer)
            return Receive(p, buffer.Length, 0, out length);
    }

    /// <summary>
    /// Copies the next message into <paramref name="buffer"/>, waiting as long
    /// as it takes; <paramref name="cancellation"/> ends the wait within 0.1 s.
    /// </summary>
    /// <returns>The part of <paramref name="buffer"/> holding the message.</returns>
    public ReadOnlyMemory<byte> Dequeue(Memory<byte> buffer, CancellationToken cancellation = default)
    {
        int length;
        if (TryDequeue(buffer.Span, out length)) // the common case: no pinning (on shm://, no GC transition)
            return buffer[..length];
        using MemoryHandle pin = buffer.Pin();
        while (!Receive((byte*)pin.Pointer, buffer.Length, Slice.Ns(cancellation), out length))
            cancellation.ThrowIfCancellationRequested();
        return buffer[..length];
    }

    /// <summary>The next message in a new array, waiting as long as it takes.</summary>
    public byte[] Dequeue(CancellationToken cancellation = default)
    {
        _scratch ??= new byte[Math.Max(MaxMessageSize, 1)];
        return Dequeue(_scratch, cancellation).ToArray();
    }

    private bool Receive(byte* p, int capacity, long timeoutNs, out int length)
    {
        nuint len;
        int rc = timeoutNs == 0 && _shm ? Native.SubRecvNow(H, p, (nuint)capacity, &len, 0)
                                        : Native.SubRecv(H, p, (nuint)capacity, &len, timeoutNs);
        length = (int)len;
        switch (rc)
        {
            case 0:
                return true;
            case Native.EAGAIN or Native.ETIMEDOUT:
                length = 0;
                return false;
            case Native.ELOST:
                throw new DmaqLostException(DmaqException.From(rc).Message, len);
            case Native.EMSGSIZE:
                throw new DmaqMessageTooLargeException(DmaqException.From(rc).Message, (int)len);
            default:
                throw DmaqException.From(rc);
        }
    }

    /// <summary>
    /// The next message in place, without a copy, if one is waiting: read it
    /// through <see cref="ReadLease.Span"/>, then dispose the lease.
    /// </summary>
    /// <returns>False if none is waiting.</returns>
    public bool TryPeek(out ReadLease lease) => Peek(0, out lease);

    /// <summary>The next message in place, waiting as long as it takes.</summary>
    public ReadLease Peek(CancellationToken cancellation = default)
    {
        ReadLease lease;
        while (!Peek(Slice.Ns(cancellation), out lease))
            cancellation.ThrowIfCancellationRequested();
        return lease;
    }

    private bool Peek(long timeoutNs, out ReadLease lease)
    {
        int rc;
        fixed (Native.Lease* l = &_lease)
            rc = timeoutNs == 0 && _shm ? Native.SubPeekNow(H, l, 0) : Native.SubPeek(H, l, timeoutNs);
        lease = default;
        if (rc == Native.EAGAIN || rc == Native.ETIMEDOUT)
            return false;
        if (rc == Native.ELOST)
            throw new DmaqLostException(DmaqException.From(rc).Message, _lease.Lost);
        DmaqException.Check(rc);
        lease = new ReadLease(this, ++_leaseGeneration);
        return true;
    }

    internal ref readonly Native.Lease Lease(int generation)
    {
        if (generation != _leaseGeneration || (generation & 1) == 0 || _handle.IsClosed)
            throw new ObjectDisposedException(nameof(ReadLease), "the lease has been released");
        return ref _lease;
    }

    internal bool EndLease(int generation)
    {
        Lease(generation);
        int rc;
        fixed (Native.Lease* l = &_lease)
            rc = _shm ? Native.SubReleaseNow(H, l) : Native.SubRelease(H, l);
        _leaseGeneration++;
        if (rc == -9)
            return false;
        DmaqException.Check(rc);
        return true;
    }

    internal bool LeaseOutstanding(int generation) => generation == _leaseGeneration && (generation & 1) == 1 && !_handle.IsClosed;

    /// <summary>Closes the subscriber, releasing an outstanding lease.</summary>
    public void Dispose()
    {
        if ((_leaseGeneration & 1) == 1)
            _leaseGeneration++;
        _handle.Dispose();
    }
}

/// <summary>Bytes reserved in the ring (from <see cref="Publisher.Reserve"/>). Dispose aborts it unless committed.</summary>
public readonly ref struct WriteLease
{
    private readonly Publisher _publisher;
    private readonly int _generation;

    internal WriteLease(Publisher publisher, int generation)
    {
        _publisher = publisher;
        _generation = generation;
    }

    /// <summary>The reserved bytes, to write the message into.</summary>
    /// <exception cref="ObjectDisposedException">The reservation has ended.</exception>
    public Span<byte> Span => _publisher.LeaseSpan(_generation);

    /// <summary>The number of bytes reserved.</summary>
    public int Length => _publisher.LeaseOutstanding(_generation) ? _publisher.LeaseLength : 0;

    /// <summary>Publishes the first <paramref name="length"/> bytes.</summary>
    public void Commit(int length) => _publisher.EndLease(_generation, length, commit: true);

    /// <summary>Publishes all the reserved bytes.</summary>
    public void Commit() => _publisher.EndLease(_generation, Length, commit: true);

    /// <summary>Gives the reservation up; nobody sees it.</summary>
    public void Abort() => _publisher.EndLease(_generation, 0, commit: false);

    /// <summary>Aborts the reservation unless it was committed.</summary>
    public void Dispose()
    {
        if (_publisher is not null && _publisher.LeaseOutstanding(_generation))
            Abort();
    }
}

/// <summary>A message read in place (from <see cref="Subscriber.TryPeek"/>). Dispose releases it.</summary>
public readonly ref struct ReadLease
{
    private readonly Subscriber _subscriber;
    private readonly int _generation;

    internal ReadLease(Subscriber subscriber, int generation)
    {
        _subscriber = subscriber;
        _generation = generation;
    }

    /// <summary>The message's bytes in the ring.</summary>
    /// <exception cref="ObjectDisposedException">The lease has been released.</exception>
    public unsafe ReadOnlySpan<byte> Span
    {
        get
        {
            ref readonly Native.Lease l = ref _subscriber.Lease(_generation);
            return new ReadOnlySpan<byte>(l.Data, (int)l.Len);
        }
    }

    /// <summary>The channel-wide sequence number.</summary>
    public ulong Seq => _subscriber.Lease(_generation).Seq;
    /// <summary>CLOCK_REALTIME at commit, in nanoseconds.</summary>
    public ulong TimestampNs => _subscriber.Lease(_generation).TimestampNs;
    /// <summary>The id of the publisher that committed it.</summary>
    public uint PublisherId => _subscriber.Lease(_generation).PublisherId;
    /// <summary>Queue: an earlier receiver died holding it.</summary>
    public bool Redelivered => (_subscriber.Lease(_generation).Flags & Native.LeaseRedelivered) != 0;

    /// <summary>Releases it. Returns false (overwrite policy) if it was overwritten while held: discard what was read.</summary>
    public bool Release() => _subscriber.EndLease(_generation);

    /// <summary>Releases it if it is still held.</summary>
    public void Dispose()
    {
        if (_subscriber is not null && _subscriber.LeaseOutstanding(_generation))
            Release();
    }
}

/// <summary>Blocking waits in slices, so that cancellation is seen within 0.1 s.</summary>
internal static class Slice
{
    private const long SliceNs = 100_000_000;

    public static long Ns(CancellationToken token) => token.CanBeCanceled ? SliceNs : -1;

    /// <summary>True to wait again after <paramref name="rc"/>; throws on failure or cancellation.</summary>
    public static bool Again(int rc, CancellationToken token)
    {
        if (rc == Native.ETIMEDOUT || rc == Native.EAGAIN)
        {
            token.ThrowIfCancellationRequested();
            return true;
        }
        DmaqException.Check(rc);
        return false;
    }
}
