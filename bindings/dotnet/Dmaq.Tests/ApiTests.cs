using Dmaq;
using Xunit;

namespace Dmaq.Tests;

/// <summary>A fresh channel per test, unlinked afterwards.</summary>
public abstract class ChannelTest : IDisposable
{
    private static int _serial;
    protected readonly QueueOptions Options;
    protected readonly QueueFactory Factory = new();

    protected ChannelTest(ChannelKind kind = ChannelKind.Broadcast, OverflowPolicy policy = OverflowPolicy.Block,
                          long capacity = 1 << 16, long maxMessage = 1024)
    {
        Options = new QueueOptions($"dotnet-test-{Environment.ProcessId}-{Interlocked.Increment(ref _serial)}", capacity)
        {
            Kind = kind, Policy = policy, MaxMessageSize = maxMessage,
        };
    }

    public void Dispose()
    {
        try { Channel.Unlink(Options.Uri); } catch (DmaqNotFoundException) { }
    }
}

public class ApiTests : ChannelTest
{
    [Fact]
    public void TryEnqueueAndTryDequeue()
    {
        using var pub = Factory.CreatePublisher(Options);
        using var sub = Factory.CreateSubscriber(Options);
        Assert.True(pub.TryEnqueue("hello"u8));
        var buf = new byte[64];
        Assert.True(sub.TryDequeue(buf, out int len));
        Assert.Equal("hello"u8.ToArray(), buf[..len]);
        Assert.False(sub.TryDequeue(buf, out len));
        Assert.Equal(0, len);
        Assert.Equal(1024, sub.MaxMessageSize);
        Assert.Equal(Options.Uri, pub.Uri);
    }

    [Fact]
    public void EnqueueAndEveryDequeue()
    {
        using var pub = Factory.CreatePublisher(Options);
        using var sub = Factory.CreateSubscriber(Options);
        pub.Enqueue("one"u8);
        pub.Enqueue("two"u8, CancellationToken.None);
        pub.Enqueue(ReadOnlySpan<byte>.Empty);
        var buffer = new byte[16];
        Assert.Equal("one"u8.ToArray(), sub.Dequeue(buffer).ToArray());
        Assert.Equal("two"u8.ToArray(), sub.Dequeue());
        Assert.Empty(sub.Dequeue());
    }

    [Fact]
    public void ZeroCopyWriteAndRead()
    {
        using var pub = Factory.CreatePublisher(Options);
        using var sub = Factory.CreateSubscriber(Options);
        using (var w = pub.Reserve(8))
        {
            Assert.Equal(8, w.Length);
            "abcdefgh"u8.CopyTo(w.Span);
            w.Commit(5);
        }
        Assert.True(sub.TryPeek(out var r));
        Assert.Equal("abcde"u8.ToArray(), r.Span.ToArray());
        Assert.Equal(pub.Id, r.PublisherId);
        Assert.False(r.Redelivered);
        Assert.True(r.TimestampNs > 0);
        ulong seq = r.Seq;
        Assert.True(r.Release());
        pub.Enqueue("x"u8);
        using var next = sub.Peek();
        Assert.Equal(seq + 1, next.Seq);
    }

    [Fact]
    public void PublisherWithoutTimestamps()
    {
        using var sub = Factory.CreateSubscriber(Options);
        var plainOptions = new QueueOptions(Options.QueueName)
        {
            Kind = ChannelKind.Any, Policy = OverflowPolicy.Any, Timestamps = false,
        };
        using (var plain = Factory.CreatePublisher(plainOptions))
        {
            Assert.True(plain.TryEnqueue("plain"u8));
            using var w = plain.Reserve(3);
            w.Commit();
            for (int i = 0; i < 2; i++)
            {
                Assert.True(sub.TryPeek(out var r));
                Assert.Equal((plain.Id, 0ul), (r.PublisherId, r.TimestampNs));
                r.Release();
            }
        }
        using var pub = Factory.CreatePublisher(Options);
        Assert.True(pub.TryEnqueue("stamped"u8));
        Assert.True(sub.TryPeek(out var s));
        Assert.True(s.TimestampNs > 0);
        s.Release();
    }

    // Leases are ref structs, which lambdas cannot capture: these ask instead.
    internal static bool Refused(WriteLease w, bool commit = false)
    {
        try
        {
            if (commit)
                w.Commit();
            else
                _ = w.Span.Length;
            return false;
        }
        catch (ObjectDisposedException)
        {
            return true;
        }
    }

    internal static bool Refused(ReadLease r, bool release = false)
    {
        try
        {
            if (release)
                r.Release();
            else
                _ = r.Span.Length;
            return false;
        }
        catch (ObjectDisposedException)
        {
            return true;
        }
    }

    [Fact]
    public void LeasesRefuseUseAfterRelease()
    {
        using var pub = Factory.CreatePublisher(Options);
        using var sub = Factory.CreateSubscriber(Options);
        var w = pub.Reserve(4);
        w.Commit();
        Assert.True(Refused(w));
        Assert.True(Refused(w, commit: true));
        Assert.True(sub.TryPeek(out var r));
        r.Dispose();
        Assert.True(Refused(r));
        Assert.True(Refused(r, release: true));
        r.Dispose(); // twice: harmless
    }

    [Fact]
    public void DisposingAnUncommittedReservationAbortsIt()
    {
        using var pub = Factory.CreatePublisher(Options);
        using var sub = Factory.CreateSubscriber(Options);
        using (var w = pub.Reserve(4))
            "lost"u8.CopyTo(w.Span);
        pub.Reserve(1).Abort();
        pub.Enqueue("kept"u8);
        Assert.Equal("kept"u8.ToArray(), sub.Dequeue());
        var big = pub.Reserve(4);
        bool threw = false;
        try { big.Commit(5); } catch (ArgumentOutOfRangeException) { threw = true; }
        Assert.True(threw, "committing more than was reserved is refused");
        big.Dispose();
    }

    [Fact]
    public void OneLeaseAtATime()
    {
        using var pub = Factory.CreatePublisher(Options);
        using var sub = Factory.CreateSubscriber(Options);
        pub.Enqueue("a"u8);
        pub.Enqueue("b"u8);
        Assert.True(sub.TryPeek(out var r));
        Assert.Throws<DmaqBusyException>(() => sub.TryPeek(out _));
        r.Dispose();
        var w = pub.Reserve(1);
        Assert.Throws<DmaqBusyException>(() => pub.Reserve(1));
        w.Dispose();
    }

    [Fact]
    public void DisposeTwiceAndUseAfterDispose()
    {
        var pub = Factory.CreatePublisher(Options);
        var sub = Factory.CreateSubscriber(Options);
        pub.Enqueue("x"u8);
        Assert.True(sub.TryPeek(out var r));
        var w = pub.Reserve(4);
        sub.Dispose();
        pub.Dispose();
        sub.Dispose();
        pub.Dispose();
        Assert.True(ApiTests.Refused(r));
        Assert.True(ApiTests.Refused(w));
        Assert.Throws<ObjectDisposedException>(() => pub.TryEnqueue("y"u8));
        Assert.Throws<ObjectDisposedException>(() => sub.TryDequeue(new byte[4], out _));
    }

    [Fact]
    public void CancellationEndsABlockedDequeueSoon()
    {
        using var sub = Factory.CreateSubscriber(Options);
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        var watch = System.Diagnostics.Stopwatch.StartNew();
        Assert.ThrowsAny<OperationCanceledException>(() => sub.Dequeue(cts.Token));
        Assert.InRange(watch.Elapsed.TotalSeconds, 0.15, 5);
        using var cts2 = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        Assert.ThrowsAny<OperationCanceledException>(() => { using var l = sub.Peek(cts2.Token); });
    }

    [Fact]
    public void CancellationEndsABlockedEnqueue()
    {
        using var pub = Factory.CreatePublisher(Options);
        using var sub = Factory.CreateSubscriber(Options); // never reads: the ring fills
        var msg = new byte[1000];
        while (pub.TryEnqueue(msg)) { }
        Assert.False(pub.TryEnqueue(msg));
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        Assert.ThrowsAny<OperationCanceledException>(() => pub.Enqueue(msg, cts.Token));
        Assert.Throws<DmaqTimeoutException>(() => { using var l = pub.Reserve(1000, TimeSpan.FromMilliseconds(50)); });
        Assert.Throws<DmaqWouldBlockException>(() => { using var l = pub.Reserve(1000, TimeSpan.Zero); });
    }

    [Fact]
    public void Stat()
    {
        using var pub = Factory.CreatePublisher(Options);
        using var sub = Factory.CreateSubscriber(Options);
        pub.Enqueue("x"u8);
        var st = Channel.Stat(Options.Uri);
        Assert.Equal((ChannelKind.Broadcast, OverflowPolicy.Block, 1L << 16, 1024L, 1, 1, 1L, false),
                     (st.Kind, st.Policy, st.Capacity, st.MaxMessage, st.Publishers, st.Subscribers, st.Published, st.Stale));
        Assert.Equal("0.1.0".Length > 0, Channel.LibraryVersion.Split('.').Length == 3);
    }

    [Fact]
    public async Task ManySubscribersInParallelTasks()
    {
        const int Subscribers = 4, Messages = 5000;
        var subs = Enumerable.Range(0, Subscribers).Select(_ => Factory.CreateSubscriber(Options)).ToArray();
        var readers = subs.Select(sub => Task.Run(() =>
        {
            using (sub)
            {
                var buf = new byte[8];
                for (long i = 0; i < Messages; i++)
                {
                    int n = sub.Dequeue(buf).Length;
                    Assert.Equal(8, n);
                    Assert.Equal(i, BitConverter.ToInt64(buf));
                }
            }
        })).ToArray();
        using (var pub = Factory.CreatePublisher(Options))
            for (long i = 0; i < Messages; i++)
                pub.Enqueue(BitConverter.GetBytes(i));
        await Task.WhenAll(readers);
    }
}

public class OverwriteTests() : ChannelTest(ChannelKind.Broadcast, OverflowPolicy.Overwrite, 4096, 256)
{
    [Fact]
    public void ALappedSubscriberLearnsHowManyItLost()
    {
        using var pub = Factory.CreatePublisher(Options);
        using var sub = Factory.CreateSubscriber(Options);
        var msg = new byte[64];
        for (int i = 0; i < 200; i++)
            pub.Enqueue(msg);
        var e = Assert.Throws<DmaqLostException>(() => sub.TryDequeue(new byte[256], out _));
        Assert.True(e.Lost > 0);
        Assert.Equal(-8, e.Code);
        ulong received = 0;
        while (sub.TryDequeue(new byte[256], out _))
            received++;
        Assert.Equal(200UL, e.Lost + received);
    }

    [Fact]
    public void ALeaseOverwrittenWhileHeld()
    {
        using var pub = Factory.CreatePublisher(Options);
        using var sub = Factory.CreateSubscriber(Options);
        pub.Enqueue("first"u8);
        Assert.True(sub.TryPeek(out var r));
        for (int i = 0; i < 200; i++)
            pub.Enqueue(new byte[64]);
        Assert.False(r.Release());
    }
}

public class ErrorTests
{
    private static string Fresh() => $"dotnet-err-{Environment.ProcessId}-{Guid.NewGuid():N}";

    [Fact]
    public void EveryCodeHasItsOwnClass()
    {
        var types = new HashSet<Type>();
        for (int code = -1; code >= -19; code--)
        {
            var e = DmaqException.From(code);
            Assert.Equal(code, e.Code);
            Assert.NotEqual(typeof(DmaqException), e.GetType());
            Assert.True(types.Add(e.GetType()), $"code {code}");
            Assert.NotEqual(DmaqException.Describe(-1000), DmaqException.Describe(code));
        }
    }

    [Fact]
    public void ErrorsCarryTheDetail()
    {
        var f = new QueueFactory();
        var e = Assert.Throws<DmaqInvalidArgumentException>(() => f.CreatePublisher(new QueueOptions("")));
        Assert.Contains("empty", e.Message);
        Assert.Throws<DmaqInvalidArgumentException>(() => f.CreatePublisher(new QueueOptions(Fresh(), 1000)));
        Assert.Throws<DmaqInvalidArgumentException>(() =>
            f.CreatePublisher(new QueueOptions(Fresh()) { Policy = OverflowPolicy.Overwrite }));
        Assert.Throws<DmaqNotFoundException>(() => Channel.Stat("shm://" + Fresh()));
        Assert.Throws<DmaqNotFoundException>(() => Channel.Unlink("shm://" + Fresh()));
        var name = Fresh();
        using (var q = f.CreatePublisher(new QueueOptions(name) { Kind = ChannelKind.Queue }))
        {
            var inc = Assert.Throws<DmaqIncompatibleException>(() =>
                f.CreateSubscriber(new QueueOptions(name) { Kind = ChannelKind.Broadcast }));
            Assert.Contains("queue", inc.Message);
            Assert.Throws<DmaqMessageTooLargeException>(() => q.TryEnqueue(new byte[1 << 20]));
        }
        Channel.Unlink("shm://" + name);
    }

    [Fact]
    public void TooManySubscribers()
    {
        var options = new QueueOptions(Fresh());
        var f = new QueueFactory();
        var subs = Enumerable.Range(0, 64).Select(_ => f.CreateSubscriber(options)).ToList();
        Assert.Throws<DmaqLimitException>(() => f.CreateSubscriber(options));
        subs.ForEach(s => s.Dispose());
        Channel.Unlink(options.Uri);
    }

    [Fact]
    public void ASmallBufferLeavesTheMessage()
    {
        var options = new QueueOptions(Fresh());
        var f = new QueueFactory();
        using var sub = f.CreateSubscriber(options);
        using (var pub = f.CreatePublisher(options))
            pub.Enqueue(new byte[100]);
        var e = Assert.Throws<DmaqMessageTooLargeException>(() => sub.TryDequeue(new byte[10], out _));
        Assert.Equal(100, e.Needed);
        Assert.True(sub.TryDequeue(new byte[100], out int n));
        Assert.Equal(100, n);
        Channel.Unlink(options.Uri);
    }
}
