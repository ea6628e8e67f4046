using Dmaq;
using Xunit;

namespace Dmaq.Tests;

/// <summary>The batch calls: EnqueueMany, DequeueMany and PeekMany, and their Try forms.</summary>
public class BatchTests() : ChannelTest(ChannelKind.Broadcast, OverflowPolicy.Block, 1 << 16, 1024)
{
    /// <summary>n messages packed back to back: message i is i % 101 bytes, each byte (i + j) % 251.</summary>
    private static (byte[] Packed, int[] Lengths) Messages(int n)
    {
        int[] lengths = Enumerable.Range(0, n).Select(i => i % 101).ToArray();
        var packed = new byte[lengths.Sum()];
        for (int i = 0, at = 0; i < n; at += lengths[i], i++)
            for (int j = 0; j < lengths[i]; j++)
                packed[at + j] = (byte)((i + j) % 251);
        return (packed, lengths);
    }

    private static void AssertMessage(int i, ReadOnlySpan<byte> message)
    {
        Assert.Equal(i % 101, message.Length);
        for (int j = 0; j < message.Length; j++)
            Assert.Equal((byte)((i + j) % 251), message[j]);
    }

    [Fact]
    public void EnqueueManyAndDequeueManyKeepOrderAndBytes()
    {
        using var pub = Factory.CreatePublisher(Options);
        using var sub = Factory.CreateSubscriber(Options);
        var (packed, lengths) = Messages(300); // more than one call's 256
        Assert.Equal(300, pub.EnqueueMany(packed, lengths));
        var buffer = new byte[4096];
        var got = new int[64];
        int received = 0;
        while (received < 300)
        {
            int n = sub.TryDequeueMany(buffer, got);
            Assert.InRange(n, 1, 64);
            for (int k = 0, at = 0; k < n; at += got[k], k++)
                AssertMessage(received + k, buffer.AsSpan(at, got[k]));
            received += n;
        }
        Assert.Equal(0, sub.TryDequeueMany(buffer, got));
    }

    [Fact]
    public void TryEnqueueManyPublishesWhatFitsAndSaysHowMany()
    {
        using var pub = Factory.CreatePublisher(Options);
        using var sub = Factory.CreateSubscriber(Options); // reads only at the end: the ring fills
        var lengths = Enumerable.Repeat(1000, 200).ToArray(); // 200 KB into a 64 KiB ring
        var packed = new byte[200 * 1000];
        for (int i = 0; i < 200; i++)
            packed[i * 1000] = (byte)i;
        int sent = pub.TryEnqueueMany(packed, lengths);
        Assert.InRange(sent, 1, 199);
        Assert.Equal(0, pub.TryEnqueueMany(packed.AsSpan(sent * 1000), lengths.AsSpan(sent)));
        Assert.Equal(0, pub.EnqueueMany(packed.AsSpan(sent * 1000), lengths.AsSpan(sent), TimeSpan.FromMilliseconds(20)));
        var buffer = new byte[1000];
        for (int i = 0; i < sent; i++)
        {
            Assert.True(sub.TryDequeue(buffer, out int n));
            Assert.Equal((1000, (byte)i), (n, buffer[0]));
        }
        Assert.False(sub.TryDequeue(buffer, out _));
    }

    [Theory]
    [InlineData(null)]
    [InlineData(600.0)]
    public async Task EnqueueManyWaitsForRoomUntilAllAreOut(double? timeoutSeconds)
    {
        using var pub = Factory.CreatePublisher(Options);
        var sub = Factory.CreateSubscriber(Options);
        const int Count = 500; // eight times the ring
        var reader = Task.Run(() =>
        {
            using (sub)
            {
                var buffer = new byte[1024];
                for (int i = 0; i < Count; i++)
                {
                    Assert.Equal(1000, sub.Dequeue(buffer).Length);
                    Assert.Equal(i, BitConverter.ToInt32(buffer));
                }
            }
        });
        var packed = new byte[Count * 1000];
        for (int i = 0; i < Count; i++)
            BitConverter.GetBytes(i).CopyTo(packed, i * 1000);
        var timeout = timeoutSeconds is null ? (TimeSpan?)null : TimeSpan.FromSeconds(timeoutSeconds.Value);
        Assert.Equal(Count, pub.EnqueueMany(packed, Enumerable.Repeat(1000, Count).ToArray(), timeout));
        await reader;
    }

    [Fact]
    public void BadBatchesAreRefusedWithWhatWasWrong()
    {
        using var pub = Factory.CreatePublisher(Options);
        using var sub = Factory.CreateSubscriber(Options);
        var negative = Assert.Throws<ArgumentOutOfRangeException>(() => pub.TryEnqueueMany(new byte[8], [4, -1]));
        Assert.Contains("-1", negative.Message);
        var over = Assert.Throws<ArgumentException>(() => pub.TryEnqueueMany(new byte[8], [4, 5]));
        Assert.Contains("9 bytes", over.Message);
        // The fourth message is longer than the channel's maximum: the three before it stand.
        var e = Assert.Throws<DmaqMessageTooLargeException>(() => pub.EnqueueMany(new byte[2003], [1, 1, 1, 2000]));
        Assert.Equal(3, e.Completed);
        Assert.Contains("2000", e.Message);
        Assert.Equal(0, pub.EnqueueMany(ReadOnlySpan<byte>.Empty, ReadOnlySpan<int>.Empty));
        var got = new int[8];
        Assert.Equal(3, sub.TryDequeueMany(new byte[16], got));
        Assert.Equal([1, 1, 1], got[..3]);
        Assert.Throws<ArgumentException>(() => sub.TryDequeueMany(new byte[16], Span<int>.Empty));
        Assert.Throws<ArgumentOutOfRangeException>(() => sub.TryPeekMany(out _, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => sub.TryPeekMany(out _, 257));
    }

    [Fact]
    public void DequeueManyTakesWhatFitsTheBufferAndLeavesTheRest()
    {
        using var pub = Factory.CreatePublisher(Options);
        using var sub = Factory.CreateSubscriber(Options);
        pub.EnqueueMany(new byte[600], [100, 200, 300]);
        var got = new int[8];
        var small = new byte[50];
        var e = Assert.Throws<DmaqMessageTooLargeException>(() => sub.TryDequeueMany(small, got));
        Assert.Equal((100, 0), (e.Needed, e.Completed));
        Assert.Equal(2, sub.DequeueMany(new byte[350], got)); // 100 + 200 fit; 300 more would not
        Assert.Equal([100, 200], got[..2]);
        Assert.Equal(1, sub.DequeueMany(new byte[350], got));
        Assert.Equal(300, got[0]);
    }

    [Fact]
    public void CancellationEndsABlockedDequeueManyOrPeekMany()
    {
        using var sub = Factory.CreateSubscriber(Options);
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(150));
        Assert.ThrowsAny<OperationCanceledException>(() => sub.DequeueMany(new byte[64], new int[4], cts.Token));
        using var cts2 = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        Assert.ThrowsAny<OperationCanceledException>(() => { using var b = sub.PeekMany(cancellation: cts2.Token); });
    }

    [Fact]
    public void PeekManyLendsTheMessagesInPlaceUntilReleased()
    {
        using var pub = Factory.CreatePublisher(Options);
        using var sub = Factory.CreateSubscriber(Options);
        Assert.False(sub.TryPeekMany(out _));
        var (packed, lengths) = Messages(10);
        pub.EnqueueMany(packed, lengths);
        Assert.True(sub.TryPeekMany(out var batch, 4));
        Assert.Equal(4, batch.Count);
        int i = 0;
        ulong firstSeq = batch[0].Seq;
        foreach (var m in batch)
        {
            AssertMessage(i, m.Span);
            Assert.Equal(firstSeq + (ulong)i, m.Seq);
            Assert.Equal(pub.Id, m.PublisherId);
            Assert.True(m.TimestampNs > 0);
            Assert.False(m.Redelivered);
            i++;
        }
        Assert.Equal(4, i);
        Assert.True(OutOfRange(batch, 4));
        Assert.True(OutOfRange(batch, -1));
        Assert.Throws<DmaqBusyException>(() => sub.TryPeek(out _));
        Assert.Throws<DmaqBusyException>(() => sub.TryPeekMany(out _));
        Assert.True(batch.Release());
        Assert.Equal(0, batch.Count);
        Assert.True(Refused(batch));
        Assert.True(Refused(batch, release: true));
        batch.Dispose(); // after release: harmless

        using (var rest = sub.PeekMany())
        {
            Assert.Equal(6, rest.Count);
            for (int k = 0; k < 6; k++)
                AssertMessage(4 + k, rest[k].Span);
        }
        Assert.False(sub.TryPeekMany(out _));
        pub.Enqueue("after"u8);
        Assert.True(sub.TryPeek(out var single)); // the batch's disposal released it
        Assert.Equal("after"u8.ToArray(), single.Span.ToArray());
        single.Dispose();
    }

    [Fact]
    public void DisposingTheSubscriberEndsItsBatch()
    {
        using var pub = Factory.CreatePublisher(Options);
        var sub = Factory.CreateSubscriber(Options);
        pub.Enqueue("x"u8);
        Assert.True(sub.TryPeekMany(out var batch));
        sub.Dispose();
        Assert.Equal(0, batch.Count);
        Assert.True(Refused(batch));
        Assert.Throws<ObjectDisposedException>(() => sub.TryDequeueMany(new byte[8], new int[1]));
        batch.Dispose();
    }

    private static bool Refused(ReadBatch batch, bool release = false)
    {
        try
        {
            if (release)
                batch.Release();
            else
                _ = batch[0].Span.Length;
            return false;
        }
        catch (ObjectDisposedException)
        {
            return true;
        }
    }

    private static bool OutOfRange(ReadBatch batch, int index)
    {
        try
        {
            _ = batch[index];
            return false;
        }
        catch (ArgumentOutOfRangeException)
        {
            return true;
        }
    }
}

public class BatchOverwriteTests() : ChannelTest(ChannelKind.Broadcast, OverflowPolicy.Overwrite, 4096, 256)
{
    [Fact]
    public void ALappedSubscriberLearnsWhatItLostAndKeepsWhatCameBefore()
    {
        using var pub = Factory.CreatePublisher(Options);
        using var sub = Factory.CreateSubscriber(Options);
        pub.EnqueueMany(new byte[200 * 64], Enumerable.Repeat(64, 200).ToArray());
        var e = Assert.Throws<DmaqLostException>(() => sub.TryDequeueMany(new byte[4096], new int[16]));
        Assert.True(e.Lost > 0);
        ulong received = (ulong)e.Completed;
        var got = new int[16];
        for (int n; (n = sub.TryDequeueMany(new byte[4096], got)) > 0;)
            received += (ulong)n;
        Assert.Equal(200UL, e.Lost + received);
    }

    [Fact]
    public void ABatchOverwrittenWhileHeldSaysSoOnRelease()
    {
        using var pub = Factory.CreatePublisher(Options);
        using var sub = Factory.CreateSubscriber(Options);
        pub.EnqueueMany(new byte[10], [5, 5]);
        Assert.True(sub.TryPeekMany(out var batch));
        Assert.Equal(2, batch.Count);
        for (int i = 0; i < 200; i++)
            pub.Enqueue(new byte[64]);
        Assert.False(batch.Release());
    }
}
