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
    for (int i = 0; i < count; i++)
    {
        int len = i % 50 == 49 ? (int)stat.MaxMessage : 16 + rng.Next(200);
        if (i % 2 == 0)
        {
            using var lease = pub.Reserve(len, TimeSpan.FromSeconds(30));
            Payload.Seal(lease.Span, key, (uint)i, rng);
            lease.Commit(len);
        }
        else
        {
            Payload.Seal(buf.AsSpan(0, len), key, (uint)i, rng);
            pub.Enqueue(buf.AsSpan(0, len));
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
    var buffer = new byte[sub.MaxMessageSize];
    using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
    // A queue's subscribers stop at a STOP message; a broadcast's when all are accounted for.
    queue = stat.Kind == ChannelKind.Queue;
    for (long n = 0; queue || received + lost < expect; n++)
    {
        (uint, long)? id;
        byte[] copy;
        try
        {
            if (n % 2 == 0)
            {
                var lease = sub.Peek(cts.Token);
                copy = lease.Span.ToArray();
                if (!lease.Release())
                {
                    lost++; // torn: counts as lost
                    continue;
                }
            }
            else
                copy = sub.Dequeue(buffer, cts.Token).ToArray();
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
        if (queue && copy.AsSpan().SequenceEqual("DMAQSTOP"u8))
            break;
        received++;
        id = Payload.Check(copy);
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
}
File.WriteAllText(args[3], $"received={received} lost={lost} bad={bad} order={order}\n");
return 0;
