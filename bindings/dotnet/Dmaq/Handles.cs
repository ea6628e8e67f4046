using System.Buffers;
using System.Diagnostics;

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
    /// Publishes, in order, as many as there is room for now of the messages
    /// packed back to back in <paramref name="messages"/>, message i being the
    /// next <c>lengths[i]</c> bytes. One call into the library per 256
    /// messages, and on shm:// one claim, one clock read and one wake-up check
    /// for all that fit the ring (they share a timestamp): the way to stream
    /// small messages far faster than <see cref="TryEnqueue"/> one by one.
    /// </summary>
    /// <returns>How many were published: all, or the first that fit (block policy, ring full).</returns>
    /// <exception cref="ArgumentException">A length is negative, or they add up to more than <paramref name="messages"/> holds.</exception>
    /// <exception cref="DmaqException">Another failure (<see cref="DmaqException.Completed"/> says how many were published first).</exception>
    public int TryEnqueueMany(ReadOnlySpan<byte> messages, ReadOnlySpan<int> lengths) => SendMany(messages, lengths, 0);

    /// <summary>
    /// Publishes all the messages packed in <paramref name="messages"/> (as
    /// <see cref="TryEnqueueMany"/>), waiting for room up to <paramref name="timeout"/> in all.
    /// </summary>
    /// <param name="messages">The messages back to back.</param>
    /// <param name="lengths">Their lengths.</param>
    /// <param name="timeout">How long to wait for room in all (null: as long as it takes).</param>
    /// <returns>How many were published: all, or fewer if the timeout passed first.</returns>
    /// <exception cref="ArgumentException">As <see cref="TryEnqueueMany"/>.</exception>
    /// <exception cref="DmaqException">Another failure (<see cref="DmaqException.Completed"/> says how many were published first).</exception>
    public int EnqueueMany(ReadOnlySpan<byte> messages, ReadOnlySpan<int> lengths, TimeSpan? timeout = null) =>
        SendMany(messages, lengths, Native.TimeoutNs(timeout));

    private int SendMany(ReadOnlySpan<byte> messages, ReadOnlySpan<int> lengths, long timeoutNs)
    {
        long total = 0;
        foreach (int length in lengths)
        {
            if (length < 0)
                throw new ArgumentOutOfRangeException(nameof(lengths), $"a message length is {length}");
            total += length;
        }
        if (total > messages.Length)
            throw new ArgumentException($"the lengths add up to {total} bytes but messages holds {messages.Length}",
                                        nameof(lengths));
        nuint* lens = stackalloc nuint[Native.BatchMax];
        double ticksPerNs = Stopwatch.Frequency / 1e9;
        long deadline = timeoutNs > 0 ? Stopwatch.GetTimestamp() + (long)(timeoutNs * ticksPerNs) : 0;
        long waitNs = 0; // each batch is tried first without waiting (nor, when short, the GC transition)
        int done = 0;
        long offset = 0;
        fixed (byte* data = messages)
            while (done < lengths.Length)
            {
                int chunk = Math.Min(Native.BatchMax, lengths.Length - done);
                long bytes = 0;
                for (int i = 0; i < chunk; i++)
                    bytes += (long)(lens[i] = (nuint)lengths[done + i]);
                nuint sent;
                int rc = waitNs == 0 && bytes <= Native.NowBytes
                             ? Native.PubSendManyNow(H, data + offset, lens, (nuint)chunk, &sent, 0)
                             : Native.PubSendMany(H, data + offset, lens, (nuint)chunk, &sent, waitNs);
                for (int i = 0; i < (int)sent; i++)
                    offset += lengths[done + i];
                done += (int)sent;
                if (rc == 0)
                {
                    waitNs = 0;
                }
                else if (rc == Native.EAGAIN || rc == Native.ETIMEDOUT)
                {
                    if (timeoutNs == 0 || waitNs != 0)
                        break; // out of room, or of time
                    waitNs = timeoutNs < 0 ? -1 : Math.Max(1, (long)((deadline - Stopwatch.GetTimestamp()) / ticksPerNs));
                }
                else
                {
                    var e = DmaqException.From(rc);
                    e.Completed = done;
                    throw e;
                }
            }
        return done;
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
    private Native.Lease[]? _batch; // pinned: the leases of the outstanding PeekMany batch
    private int _batchCount;
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
    /// Copies the messages waiting now, in order, back to back into
    /// <paramref name="buffer"/>, with their lengths into <paramref name="lengths"/>:
    /// as many as <paramref name="lengths"/> has room for and
    /// <paramref name="buffer"/> holds. One call into the library for them all.
    /// </summary>
    /// <returns>How many (0 if none is waiting).</returns>
    /// <exception cref="DmaqMessageTooLargeException">The first does not fit (<see cref="DmaqMessageTooLargeException.Needed"/>); it stays unread.</exception>
    /// <exception cref="DmaqLostException">The overwrite policy lapped this subscriber after <see cref="DmaqException.Completed"/> messages, which were delivered.</exception>
    public int TryDequeueMany(Span<byte> buffer, Span<int> lengths)
    {
        fixed (byte* p = buffer)
            return ReceiveMany(p, buffer.Length, lengths, 0);
    }

    /// <summary>
    /// Copies the messages waiting (as <see cref="TryDequeueMany"/>), first
    /// waiting for one as long as it takes; <paramref name="cancellation"/> ends the wait within 0.1 s.
    /// </summary>
    /// <returns>How many (at least 1).</returns>
    /// <exception cref="OperationCanceledException">The token was cancelled before a message came.</exception>
    public int DequeueMany(Span<byte> buffer, Span<int> lengths, CancellationToken cancellation = default)
    {
        fixed (byte* p = buffer)
        {
            int n = ReceiveMany(p, buffer.Length, lengths, 0); // the common case: on shm://, no GC transition
            while (n == 0)
            {
                n = ReceiveMany(p, buffer.Length, lengths, Slice.Ns(cancellation));
                if (n == 0)
                    cancellation.ThrowIfCancellationRequested();
            }
            return n;
        }
    }

    private int ReceiveMany(byte* p, int capacity, Span<int> lengths, long timeoutNs)
    {
        if (lengths.IsEmpty)
            throw new ArgumentException("lengths has no room for a message", nameof(lengths));
        int max = Math.Min(lengths.Length, Native.BatchMax);
        nuint* lens = stackalloc nuint[Native.BatchMax];
        nuint count;
        int rc = timeoutNs == 0 && _shm && capacity <= Native.NowBytes
                     ? Native.SubRecvManyNow(H, p, (nuint)capacity, lens, (nuint)max, &count, 0)
                     : Native.SubRecvMany(H, p, (nuint)capacity, lens, (nuint)max, &count, timeoutNs);
        int n = (int)count;
        for (int i = 0; i < n; i++)
            lengths[i] = (int)lens[i];
        if (rc == 0 || ((rc == Native.EAGAIN || rc == Native.ETIMEDOUT) && n == 0))
            return n;
        DmaqException e = rc switch
        {
            Native.ELOST => new DmaqLostException(DmaqException.From(rc).Message, lens[n]),
            Native.EMSGSIZE => new DmaqMessageTooLargeException(DmaqException.From(rc).Message, (int)lens[0]),
            _ => DmaqException.From(rc),
        };
        e.Completed = n;
        throw e;
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

    /// <summary>
    /// Up to <paramref name="maxCount"/> (at most 256) of the messages waiting
    /// now, in place, without a copy, with one call into the library: read
    /// them through the batch (<c>foreach (var m in batch)</c>, or
    /// <c>batch[i].Span</c>), then dispose it, which releases them all. While
    /// it is held, this subscriber hands out nothing else.
    /// </summary>
    /// <returns>False if none is waiting.</returns>
    /// <exception cref="DmaqLostException">The overwrite policy lapped this subscriber.</exception>
    /// <exception cref="DmaqBusyException">A lease or batch is still held.</exception>
    public bool TryPeekMany(out ReadBatch batch, int maxCount = Native.BatchMax) => PeekMany(maxCount, 0, out batch);

    /// <summary>Up to <paramref name="maxCount"/> messages in place (as <see cref="TryPeekMany"/>), first waiting for one as long as it takes.</summary>
    /// <exception cref="OperationCanceledException">The token was cancelled before a message came.</exception>
    public ReadBatch PeekMany(int maxCount = Native.BatchMax, CancellationToken cancellation = default)
    {
        ReadBatch batch;
        if (PeekMany(maxCount, 0, out batch))
            return batch;
        while (!PeekMany(maxCount, Slice.Ns(cancellation), out batch))
            cancellation.ThrowIfCancellationRequested();
        return batch;
    }

    private bool PeekMany(int maxCount, long timeoutNs, out ReadBatch batch)
    {
        if (maxCount < 1 || maxCount > Native.BatchMax)
            throw new ArgumentOutOfRangeException(nameof(maxCount), $"maxCount is {maxCount}; it must be 1 to {Native.BatchMax}");
        _batch ??= GC.AllocateArray<Native.Lease>(Native.BatchMax, pinned: true);
        nuint count;
        int rc;
        fixed (Native.Lease* l = _batch)
            rc = timeoutNs == 0 && _shm ? Native.SubPeekManyNow(H, l, (nuint)maxCount, &count, 0)
                                        : Native.SubPeekMany(H, l, (nuint)maxCount, &count, timeoutNs);
        batch = default;
        if (rc == Native.EAGAIN || rc == Native.ETIMEDOUT)
            return false;
        if (rc == Native.ELOST)
            throw new DmaqLostException(DmaqException.From(rc).Message, _batch[0].Lost);
        DmaqException.Check(rc);
        _batchCount = (int)count;
        batch = new ReadBatch(this, ++_leaseGeneration, _batchCount);
        return true;
    }

    internal ref readonly Native.Lease BatchLease(int generation, int index)
    {
        Lease(generation);
        if ((uint)index >= (uint)_batchCount)
            throw new ArgumentOutOfRangeException(nameof(index), $"index {index} is outside the batch of {_batchCount}");
        return ref _batch![index];
    }

    internal bool EndBatch(int generation)
    {
        Lease(generation);
        int rc;
        fixed (Native.Lease* l = _batch)
            rc = _shm ? Native.SubReleaseManyNow(H, l, (nuint)_batchCount)
                      : Native.SubReleaseMany(H, l, (nuint)_batchCount);
        _leaseGeneration++;
        _batchCount = 0;
        if (rc == Native.EOVERWRITTEN)
            return false;
        DmaqException.Check(rc);
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
        if (rc == Native.EOVERWRITTEN)
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

/// <summary>
/// Messages read in place (from <see cref="Subscriber.TryPeekMany"/>), held
/// together until released. Dispose releases them.
/// </summary>
public readonly ref struct ReadBatch
{
    private readonly Subscriber _subscriber;
    private readonly int _generation;
    private readonly int _count;

    internal ReadBatch(Subscriber subscriber, int generation, int count)
    {
        _subscriber = subscriber;
        _generation = generation;
        _count = count;
    }

    /// <summary>How many messages the batch holds (0 once released).</summary>
    public int Count => _subscriber is not null && _subscriber.LeaseOutstanding(_generation) ? _count : 0;

    /// <summary>Message <paramref name="index"/> of the batch, in order.</summary>
    /// <exception cref="ObjectDisposedException">The batch has been released.</exception>
    /// <exception cref="ArgumentOutOfRangeException">No such message.</exception>
    public BatchMessage this[int index] => new(in _subscriber.BatchLease(_generation, index));

    /// <summary>The messages in order.</summary>
    public Enumerator GetEnumerator() => new(this);

    /// <summary>Releases them all. Returns false (overwrite policy) if any was overwritten while held: discard what was read.</summary>
    /// <exception cref="ObjectDisposedException">The batch has already been released.</exception>
    public bool Release() => _subscriber.EndBatch(_generation);

    /// <summary>Releases them if they are still held.</summary>
    public void Dispose()
    {
        if (_subscriber is not null && _subscriber.LeaseOutstanding(_generation))
            Release();
    }

    /// <summary>Walks a batch's messages (for <c>foreach</c>).</summary>
    public ref struct Enumerator
    {
        private readonly ReadBatch _batch;
        private int _index;

        internal Enumerator(ReadBatch batch)
        {
            _batch = batch;
            _index = -1;
        }

        /// <summary>Moves to the next message; false after the last.</summary>
        public bool MoveNext() => ++_index < _batch._count;

        /// <summary>The message at the enumerator.</summary>
        public BatchMessage Current => _batch[_index];
    }
}

/// <summary>One message of a <see cref="ReadBatch"/>; its bytes stay valid until the batch is released.</summary>
public readonly unsafe ref struct BatchMessage
{
    internal BatchMessage(in Native.Lease lease)
    {
        Span = new ReadOnlySpan<byte>(lease.Data, (int)lease.Len);
        Seq = lease.Seq;
        TimestampNs = lease.TimestampNs;
        PublisherId = lease.PublisherId;
        Redelivered = (lease.Flags & Native.LeaseRedelivered) != 0;
    }

    /// <summary>The message's bytes in the ring.</summary>
    public ReadOnlySpan<byte> Span { get; }
    /// <summary>The channel-wide sequence number.</summary>
    public ulong Seq { get; }
    /// <summary>CLOCK_REALTIME at commit, in nanoseconds.</summary>
    public ulong TimestampNs { get; }
    /// <summary>The id of the publisher that committed it.</summary>
    public uint PublisherId { get; }
    /// <summary>Queue: an earlier receiver died holding it.</summary>
    public bool Redelivered { get; }
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
