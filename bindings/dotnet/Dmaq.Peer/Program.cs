// The .NET twin of tests/peer.c, same arguments, messages and summary line:
//   Dmaq.Peer pub URI COUNT KEY  |  Dmaq.Peer sub URI EXPECT OUTFILE
using Dmaq;
using Dmaq.Testing;

string uri = args[1];
var options = QueueOptions.FromUri(uri);
var stat = Channel.Stat(uri);
if (args[0] == "pub")
{
    int count = int.Parse(args[2]);
    uint key = uint.Parse(args[3]);
    var rng = new Random((int)key);
    using var pub = new QueueFactory().CreatePublisher(options);
    var buf = new byte[stat.MaxMessage];
    // Messages go out in runs of Run, each run one way in turn: reserved in
    // place, copied one by one, or packed into one EnqueueMany.
    const int Run = 8;
    var packed = new byte[Run * stat.MaxMessage];
    var lengths = new int[Run];
    int packedBytes = 0, packedCount = 0;
    for (int i = 0; i < count; i++)
    {
        int len = i % 50 == 49 ? (int)stat.MaxMessage : 16 + rng.Next(200);
        switch (i / Run % 3)
        {
            case 0:
                using (var lease = pub.Reserve(len, TimeSpan.FromSeconds(30)))
                {
                    Payload.Seal(lease.Span, key, (uint)i, rng);
                    lease.Commit(len);
                }
                break;
            case 1:
                Payload.Seal(buf.AsSpan(0, len), key, (uint)i, rng);
                pub.Enqueue(buf.AsSpan(0, len));
                break;
            default:
                Payload.Seal(packed.AsSpan(packedBytes, len), key, (uint)i, rng);
                packedBytes += len;
                lengths[packedCount++] = len;
                if (packedCount == Run || i == count - 1)
                {
                    int sent = pub.EnqueueMany(packed.AsSpan(0, packedBytes), lengths.AsSpan(0, packedCount),
                                               TimeSpan.FromSeconds(30));
                    if (sent != packedCount)
                        throw new TimeoutException($"EnqueueMany published {sent} of {packedCount} in 30 s");
                    packedBytes = packedCount = 0;
                }
                break;
        }
    }
    return 0;
}

long expect = long.Parse(args[2]);
long received = 0, lost = 0, bad = 0, order = 0;
var last = new Dictionary<uint, long>();
bool queue = false;
using (var sub = new QueueFactory().CreateSubscriber(options))
{
    var buffer = new byte[Math.Max(sub.MaxMessageSize, 64 << 10)];
    var lengths = new int[32];
    var copies = new List<byte[]>();
    using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
    // A queue's subscribers stop at a STOP message; a broadcast's when all are accounted for.
    queue = stat.Kind == ChannelKind.Queue;
    // Each call takes messages one way in turn: peeked, copied, and on a
    // broadcast channel also in batches, copied or in place (not on a queue,
    // where a batch could take another subscriber's STOP).
    int ways = queue ? 2 : 4;
    for (long n = 0; queue || received + lost < expect; n++)
    {
        copies.Clear();
        try
        {
            switch (n % ways)
            {
                case 0:
                    var lease = sub.Peek(cts.Token);
                    copies.Add(lease.Span.ToArray());
                    if (!lease.Release())
                    {
                        lost++; // torn: counts as lost
                        continue;
                    }
                    break;
                case 1:
                    copies.Add(sub.Dequeue(buffer, cts.Token).ToArray());
                    break;
                case 2:
                    int got;
                    try
                    {
                        got = sub.DequeueMany(buffer, lengths, cts.Token);
                    }
                    catch (DmaqLostException e)
                    {
                        lost += (long)e.Lost;
                        got = e.Completed; // those before the gap were delivered
                    }
                    for (int k = 0, at = 0; k < got; at += lengths[k], k++)
                        copies.Add(buffer.AsSpan(at, lengths[k]).ToArray());
                    break;
                default:
                    var batch = sub.PeekMany(32, cts.Token);
                    foreach (var m in batch)
                        copies.Add(m.Span.ToArray());
                    if (!batch.Release())
                    {
                        lost += copies.Count; // some were torn: discard all the batch read
                        continue;
                    }
                    break;
            }
        }
        catch (DmaqLostException e)
        {
            lost += (long)e.Lost;
            continue;
        }
        catch (OperationCanceledException)
        {
            // Say how far it got, for the test's assertion, rather than die of an unhandled exception.
            Console.Error.WriteLine($"sub: nothing more within 60 s: received={received} lost={lost} of {expect}");
            return 3;
        }
        bool stop = false;
        foreach (var copy in copies)
        {
            if (queue && copy.AsSpan().SequenceEqual("DMAQSTOP"u8))
            {
                stop = true;
                break;
            }
            received++;
            var id = Payload.Check(copy);
            if (id is null)
            {
                bad++;
                continue;
            }
            if (id.Value.Item2 >= 0)
            {
                if (last.TryGetValue(id.Value.Item1, out long prev) && id.Value.Item2 <= prev)
                    order++;
                last[id.Value.Item1] = id.Value.Item2;
            }
        }
        if (stop)
            break;
    }
}
File.WriteAllText(args[3], $"received={received} lost={lost} bad={bad} order={order}\n");
return 0;
