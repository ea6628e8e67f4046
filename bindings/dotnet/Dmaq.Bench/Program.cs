// What the .NET binding's calls cost against the same calls from C
// (dmaq-call-bench, bench/call_overhead.c), and against a Cloudtoid-shaped
// queue (CloudtoidShaped.cs), in one session: 64-byte messages, one process
// each for the calls, two for the streams. This machine's speed drifts, so
// short runs alternate and each figure is a median. Prints Markdown.
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Dmaq;
using Dmaq.Bench;

[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")] // pins CPUs (ProcessorAffinity); dmaq is Linux's

if (args.Length == 4 && args[0] == "stream-publisher") // the other process of a stream
    return StreamPublisher(args[1], args[2], long.Parse(args[3]));
if (args.Length < 1)
{
    Console.Error.WriteLine("usage: Dmaq.Bench PATH/TO/dmaq-call-bench [PAIRS]");
    return 2;
}
string cBench = args[0];
int pairs = args.Length > 1 ? int.Parse(args[1]) : 21;
const int Round = 1000, Rounds = 200, Size = 64;
const int Batch = 64; // messages per EnqueueMany, and at most per TryPeekMany, in the batched stream
const int WarmPairs = 40_000; // pairs before PairNs times any: about three laps of a 1 MiB ring of 64 B messages

var factory = new QueueFactory();
// A fresh channel for each run, as each dmaq-call-bench process makes its
// own: which physical pages a ring gets moves every figure here by up to 2x
// (one channel for all of .NET's runs measured 0.4x C in one process and
// 1.7x in the next), so both sides must sample as many.
int channelSerial = 0;
QueueOptions options = null!;
Publisher pub = null!;
Subscriber sub = null!;
void FreshChannel()
{
    if (options is not null)
    {
        pub.Dispose();
        sub.Dispose();
        Channel.Unlink(options.Uri);
    }
    options = new QueueOptions($"dotnet-bench-{Environment.ProcessId}-{channelSerial++}", 1 << 20) { Kind = ChannelKind.Broadcast };
    pub = factory.CreatePublisher(options);
    sub = factory.CreateSubscriber(options);
}
FreshChannel();
var msg = new byte[Size];
var buf = new byte[Size];
long sink = 0;

// One round of each path; returns seconds spent in (publish, consume).
(double, double) Copying()
{
    long t0 = Stopwatch.GetTimestamp();
    for (int i = 0; i < Round; i++)
        pub.TryEnqueue(msg);
    long t1 = Stopwatch.GetTimestamp();
    for (int i = 0; i < Round; i++)
    {
        sub.TryDequeue(buf, out int n);
        sink += n;
    }
    long t2 = Stopwatch.GetTimestamp();
    return (Stopwatch.GetElapsedTime(t0, t1).TotalSeconds, Stopwatch.GetElapsedTime(t1, t2).TotalSeconds);
}

(double, double) ZeroCopy()
{
    long t0 = Stopwatch.GetTimestamp();
    for (int i = 0; i < Round; i++)
    {
        var w = pub.Reserve(Size);
        msg.CopyTo(w.Span);
        w.Commit(Size);
    }
    long t1 = Stopwatch.GetTimestamp();
    for (int i = 0; i < Round; i++)
    {
        sub.TryPeek(out var r);
        sink += r.Span[0];
        r.Release();
    }
    long t2 = Stopwatch.GetTimestamp();
    return (Stopwatch.GetElapsedTime(t0, t1).TotalSeconds, Stopwatch.GetElapsedTime(t1, t2).TotalSeconds);
}

double[] Measure(Func<(double, double)> round)
{
    double pubS = 0, subS = 0;
    for (int r = 0; r < Rounds; r++)
    {
        var (p, s) = round();
        pubS += p;
        subS += s;
    }
    return [Round * Rounds / pubS, Round * Rounds / subS];
}

Dictionary<string, double> CRates()
{
    var info = new ProcessStartInfo(cBench) { RedirectStandardOutput = true };
    info.ArgumentList.Add((Round * Rounds).ToString());
    using var p = Process.Start(info)!;
    var rates = p.StandardOutput.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries)
        .Select(l => l.Split(' ')).ToDictionary(f => f[0], f => double.Parse(f[1]));
    p.WaitForExit();
    return rates;
}

for (int i = 0; i < 20; i++) // warm-up: let the JIT reach its final code
{
    Copying();
    ZeroCopy();
}
// Two processes, 64 B messages: a .NET publisher process streaming to this
// one, against dmaq-call-bench --stream doing the same in C.
const long StreamMessages = 2_000_000;
double Stream()
{
    string name = $"dotnet-bench-stream-{Environment.ProcessId}";
    var streamOptions = new QueueOptions(name, 1 << 20) { Kind = ChannelKind.Queue };
    using var s = factory.CreateSubscriber(streamOptions);
    var info = new ProcessStartInfo("dotnet") { ArgumentList = { System.Reflection.Assembly.GetEntryAssembly()!.Location, "stream-publisher", "dmaq-queue", name, StreamMessages.ToString() } };
    using var child = Process.Start(info)!;
    // On CPUs 0 and 1, as dmaq-call-bench pins its stream's two processes.
    var self = Process.GetCurrentProcess();
    nint was = self.ProcessorAffinity;
    bool pinned = Environment.ProcessorCount >= 2;
    if (pinned)
    {
        child.ProcessorAffinity = 1;
        self.ProcessorAffinity = 2;
    }
    var b = new byte[64];
    s.Dequeue(b);
    long t0 = Stopwatch.GetTimestamp();
    for (long i = 1; i < StreamMessages; i++)
        s.Dequeue(b);
    double rate = (StreamMessages - 1) / Stopwatch.GetElapsedTime(t0).TotalSeconds;
    if (pinned)
        self.ProcessorAffinity = was;
    child.WaitForExit();
    Channel.Unlink(streamOptions.Uri);
    return rate;
}

double CStream()
{
    var info = new ProcessStartInfo(cBench) { RedirectStandardOutput = true, ArgumentList = { "--stream", StreamMessages.ToString() } };
    using var p = Process.Start(info)!;
    // "stream N" (the queue, which the .NET stream above is), then "broadcast-stream N".
    string queueLine = p.StandardOutput.ReadToEnd().Split('\n').First(l => l.StartsWith("stream "));
    double rate = double.Parse(queueLine.Split(' ')[1]);
    p.WaitForExit();
    return rate;
}

var streams = new List<(double Net, double C)>();
for (int k = 0; k < Math.Max(3, pairs / 4); k++)
    streams.Add((Stream(), CStream()));

var names = new[] { "send", "recv", "reserve+commit", "peek+release" };
var net = names.ToDictionary(n => n, _ => new List<double>());
var c = names.ToDictionary(n => n, _ => new List<double>());
var ratio = names.ToDictionary(n => n, _ => new List<double>());
var cQueuePairs = new List<double>(); // send + recv pairs/s on a queue, one thread
var cQueuePairsPlain = new List<double>(); // the same, the publisher without timestamps
var cTscReads = new List<double>(); // reads of the time-stamp counter per second (a timestamp's cost)
for (int k = 0; k < pairs; k++)
{
    var cr = CRates();
    cQueuePairs.Add(cr["queue-send+recv"]);
    cQueuePairsPlain.Add(cr["queue-send+recv-no-timestamps"]);
    if (cr.TryGetValue("rdtsc", out double tsc))
        cTscReads.Add(tsc);
    FreshChannel();
    var copy = Measure(Copying);
    var zc = Measure(ZeroCopy);
    double[] mine = [copy[0], copy[1], zc[0], zc[1]];
    for (int i = 0; i < names.Length; i++)
    {
        net[names[i]].Add(mine[i]);
        c[names[i]].Add(cr[names[i]]);
        ratio[names[i]].Add(mine[i] / cr[names[i]]);
    }
}
static double Median(List<double> v) => v.Order().ElementAt(v.Count / 2);
double Pair(Dictionary<string, List<double>> d, string a, string b) => 1e9 / Median(d[a]) + 1e9 / Median(d[b]);

Console.WriteLine($"\n## .NET binding: calls against C (dmaq {Channel.LibraryVersion}, .NET {Environment.Version})\n");
Console.WriteLine($"64-byte messages, one process each, a ring nothing waits on; {pairs} alternating C and .NET runs of");
Console.WriteLine($"{Round * Rounds} messages, medians (the ratio is the median of each adjacent pair's).");
Console.WriteLine("Command: `dotnet run -c Release -- ../../../build/bench/dmaq-call-bench` in bindings/dotnet/Dmaq.Bench.\n");
Console.WriteLine("| calls | .NET msg/s | C msg/s | .NET / C |\n|---|---|---|---|");
string[] labels = ["TryEnqueue (send)", "TryDequeue (recv)", "Reserve + write + Commit", "TryPeek + read + Release"];
for (int i = 0; i < names.Length; i++)
    Console.WriteLine($"| {labels[i]} | {Median(net[names[i]]) / 1e6:F2} M | {Median(c[names[i]]) / 1e6:F2} M | {Median(ratio[names[i]]):F3}x |");
Console.WriteLine($"\nOne enqueue + dequeue pair (64 B, copying): {Pair(net, "send", "recv"):F0} ns from .NET, " +
                  $"{Pair(c, "send", "recv"):F0} ns from C; zero-copy: {Pair(net, "reserve+commit", "peek+release"):F0} ns " +
                  $"and {Pair(c, "reserve+commit", "peek+release"):F0} ns.");
double netStream = Median(streams.Select(x => x.Net).ToList()), cStream = Median(streams.Select(x => x.C).ToList());
Console.WriteLine($"\nTwo processes, 64 B messages on a queue ({streams.Count} alternating runs of {StreamMessages}, medians): " +
                  $"{netStream / 1e6:F2} M msg/s with a .NET publisher and subscriber, {cStream / 1e6:F2} M with C's " +
                  $"({Median(streams.Select(x => x.Net / x.C).ToList()):F3}x).");
pub.Dispose();
sub.Dispose();
Channel.Unlink(options.Uri);
CloudtoidSection(pairs, 1e9 / Median(cQueuePairs), 1e9 / Median(cQueuePairsPlain),
                 cTscReads.Count > 0 ? 1e9 / Median(cTscReads) : double.NaN);
return sink > 0 ? 0 : 1;

// ---- Against a Cloudtoid-shaped queue ---------------------------------------

// The publisher process of a two-process stream: 64 B messages as fast as
// the path allows, retrying while the ring is full.
static int StreamPublisher(string path, string name, long n)
{
    var message = new byte[64];
    if (path == "cloudtoid")
    {
        using var q = new CloudtoidShaped(name, 1 << 20);
        for (long i = 0; i < n; i++)
            while (!q.TryEnqueue(message)) { }
        return 0;
    }
    var o = new QueueOptions(name, 1 << 20) { Kind = path == "dmaq-queue" ? ChannelKind.Queue : ChannelKind.Broadcast };
    using var publisher = new QueueFactory().CreatePublisher(o);
    if (path == "dmaq-broadcast-batch")
    {
        var packed = new byte[Batch * 64];
        var lengths = Enumerable.Repeat(64, Batch).ToArray();
        for (long i = 0; i < n; i += Batch)
            publisher.EnqueueMany(packed, lengths);
        return 0;
    }
    for (long i = 0; i < n; i++)
    {
        if (path == "dmaq-broadcast-zc")
        {
            using var w = publisher.Reserve(64);
            message.CopyTo(w.Span);
            w.Commit();
        }
        else
        {
            publisher.Enqueue(message);
        }
    }
    return 0;
}

// This process receives n messages from a publisher process on `path`;
// messages/s from the first to the last.
static double TwoProcessStream(string path, long n)
{
    string name = $"dotnet-vs-{path}-{Environment.ProcessId}";
    var buffer = new byte[64];
    CloudtoidShaped? q = null;
    Subscriber? sub = null;
    if (path == "cloudtoid")
        q = new CloudtoidShaped(name, 1 << 20);
    else
        sub = new QueueFactory().CreateSubscriber(new QueueOptions(name, 1 << 20)
            { Kind = path == "dmaq-queue" ? ChannelKind.Queue : ChannelKind.Broadcast });
    var info = new ProcessStartInfo("dotnet")
        { ArgumentList = { System.Reflection.Assembly.GetEntryAssembly()!.Location, "stream-publisher", path, name, n.ToString() } };
    using var child = Process.Start(info)!;
    long t0 = 0, sum = 0, untimed = 0;
    for (long i = 0; i < n; i++)
    {
        if (path == "dmaq-broadcast-batch")
        {
            ReadBatch batch;
            while (!sub!.TryPeekMany(out batch, Batch)) { }
            foreach (var m in batch)
                sum += m.Span[63];
            i += batch.Count - 1;
            batch.Release();
        }
        else if (q is not null)
        {
            while (!q.TryDequeue(buffer, out _)) { }
        }
        else if (path == "dmaq-broadcast-zc")
        {
            ReadLease r;
            while (!sub!.TryPeek(out r)) { }
            sum += r.Span[63];
            r.Release();
        }
        else
        {
            while (!sub!.TryDequeue(buffer, out _)) { }
        }
        if (t0 == 0) // timed from the first message (or batch) on
        {
            t0 = Stopwatch.GetTimestamp();
            untimed = i + 1;
        }
    }
    double rate = (n - untimed) / Stopwatch.GetElapsedTime(t0).TotalSeconds;
    child.WaitForExit();
    q?.Dispose();
    sub?.Dispose();
    if (path == "cloudtoid")
        CloudtoidShaped.Remove(name);
    else
        Channel.Unlink($"shm://{name}");
    return rate + sum * 0;
}

// ns per enqueue + dequeue pair in one thread (Cloudtoid's own benchmark
// shape), over `rounds` x 1000 pairs of `size`-byte messages on a ring that
// WarmPairs have already gone round: BenchmarkDotNet, which Cloudtoid's
// figures come from, times iterations on a queue its setup made, so neither
// side's timing includes the first touch of the ring's pages (5 us a page in
// these VMs, whose hypervisor traps it).
static double PairNs(string path, int size, int rounds)
{
    string name = $"dotnet-pair-{path}-{Environment.ProcessId}";
    var message = new byte[size];
    var buffer = new byte[Math.Max(size, 1)];
    int pairs = rounds * 1000;
    if (path == "cloudtoid")
    {
        double ns;
        using (var q = new CloudtoidShaped(name, 1 << 20))
            ns = CloudtoidPairs(q, message, buffer, pairs);
        CloudtoidShaped.Remove(name);
        return ns;
    }
    var o = new QueueOptions(name, 1 << 20) { Kind = ChannelKind.Queue, Timestamps = path != "dmaq-no-timestamps" };
    var f = new QueueFactory();
    double result;
    using (var pub = f.CreatePublisher(o))
    using (var sub = f.CreateSubscriber(o))
        result = path == "dmaq-zc" ? DmaqLeasePairs(pub, sub, message, pairs) : DmaqCopyPairs(pub, sub, message, buffer, pairs);
    Channel.Unlink(o.Uri);
    return result;
}

// The timed loops, one method each and compiled fully optimised at once:
// sharing one tiered method, the three got whatever code its tiering and
// profile made of it in that process, which moved each pair by 1.6x from
// one process to the next, one up when another went down.
static double CloudtoidPairs(CloudtoidShaped q, byte[] message, byte[] buffer, int pairs)
{
    long sum = 0, t0 = 0;
    for (int i = -WarmPairs; i < pairs; i++)
    {
        if (i == 0)
            t0 = Stopwatch.GetTimestamp();
        q.TryEnqueue(message);
        q.TryDequeue(buffer, out int n);
        sum += n;
    }
    return Stopwatch.GetElapsedTime(t0).TotalNanoseconds / pairs + sum * 0;
}

static double DmaqCopyPairs(Publisher pub, Subscriber sub, byte[] message, byte[] buffer, int pairs)
{
    long sum = 0, t0 = 0;
    for (int i = -WarmPairs; i < pairs; i++)
    {
        if (i == 0)
            t0 = Stopwatch.GetTimestamp();
        pub.TryEnqueue(message);
        sub.TryDequeue(buffer, out int n);
        sum += n;
    }
    return Stopwatch.GetElapsedTime(t0).TotalNanoseconds / pairs + sum * 0;
}

static double DmaqLeasePairs(Publisher pub, Subscriber sub, byte[] message, int pairs)
{
    long sum = 0, t0 = 0;
    for (int i = -WarmPairs; i < pairs; i++)
    {
        if (i == 0)
            t0 = Stopwatch.GetTimestamp();
        var w = pub.Reserve(message.Length);
        message.CopyTo(w.Span);
        w.Commit();
        sub.TryPeek(out var r);
        sum += r.Span.Length;
        r.Release();
    }
    return Stopwatch.GetElapsedTime(t0).TotalNanoseconds / pairs + sum * 0;
}

static void CloudtoidSection(int runs, double cQueuePairNs, double cPlainPairNs, double tscReadNs)
{
    static double Med(IEnumerable<double> v) => v.Order().ElementAt(v.Count() / 2);
    string[] pairPaths = ["cloudtoid", "dmaq", "dmaq-zc", "dmaq-no-timestamps"];
    int[] sizes = [3, 64];
    for (int i = 0; i < 5; i++) // warm-up
        foreach (var p in pairPaths)
            PairNs(p, 64, 20);
    // Each run on one CPU, alternately: this VM's two vCPUs differ in speed
    // by up to 1.5x for minutes at a time (dmaq-call-bench's pair: 52 ns
    // pinned to one, 35 ns to the other, in one minute), and not for every
    // program alike, so the ratios are per CPU.
    int cpus = Math.Min(Environment.ProcessorCount, 2);
    var self = Process.GetCurrentProcess();
    nint wasAffinity = self.ProcessorAffinity;
    var pairs = new Dictionary<(string, int, int), List<double>>();
    var pairRatio = new Dictionary<(string, int, int), List<double>>();
    void Add(Dictionary<(string, int, int), List<double>> d, (string, int, int) key, double v)
    {
        d.TryAdd(key, []);
        d[key].Add(v);
    }
    for (int k = 0; k < runs * cpus; k++)
    {
        int cpu = k % cpus;
        self.ProcessorAffinity = (nint)1 << cpu; // this thread's, which runs the pairs
        foreach (int size in sizes)
        {
            double baseline = PairNs("cloudtoid", size, 100);
            Add(pairs, ("cloudtoid", size, cpu), baseline);
            foreach (var p in pairPaths[1..])
            {
                double ns = PairNs(p, size, 100);
                Add(pairs, (p, size, cpu), ns);
                Add(pairRatio, (p, size, cpu), ns / baseline);
            }
        }
    }
    self.ProcessorAffinity = wasAffinity;
    const long StreamN = 4_000_000;
    string[] streamPaths = ["cloudtoid", "dmaq-queue", "dmaq-broadcast-zc", "dmaq-broadcast-batch"];
    var streams = streamPaths.ToDictionary(p => p, _ => new List<double>());
    var streamRatio = streamPaths.ToDictionary(p => p, _ => new List<double>());
    for (int k = 0; k < Math.Max(3, runs / 4); k++)
    {
        double baseline = TwoProcessStream("cloudtoid", StreamN);
        streams["cloudtoid"].Add(baseline);
        foreach (var p in streamPaths[1..])
        {
            double rate = TwoProcessStream(p, StreamN);
            streams[p].Add(rate);
            streamRatio[p].Add(rate / baseline);
        }
    }
    Console.WriteLine("\n## .NET binding against a Cloudtoid-shaped queue (same session)\n");
    Console.WriteLine("Cloudtoid.Interprocess does not restore on this machine (no nuget.org), so the baseline is its");
    Console.WriteLine("algorithm written again in `bindings/dotnet/Dmaq.Bench/CloudtoidShaped.cs`: a compare-and-swap on");
    Console.WriteLine("the write offset per enqueue, a read lock, a state flag, zeroing, a semaphore post. The runs");
    Console.WriteLine($"alternate ({runs} of each pair on each CPU, {Math.Max(3, runs / 4)} of each stream); medians, and the median of each run's ratio.");
    Console.WriteLine("The pairs run pinned to each CPU in turn: this VM's vCPUs differ in speed, and not for every program alike.\n");
    Console.Write("| enqueue + dequeue pair, one thread |");
    for (int cpu = 0; cpu < cpus; cpu++)
        Console.Write($" CPU {cpu}: 3 B | 64 B | / Cloudtoid-shaped (64 B) |");
    Console.WriteLine("\n|---|" + string.Concat(Enumerable.Repeat("---|---|---|", cpus)));
    string[] pairLabels = [
        "Cloudtoid-shaped TryEnqueue + TryDequeue", "dmaq TryEnqueue + TryDequeue",
        "dmaq Reserve + Commit + TryPeek + Release", "dmaq TryEnqueue + TryDequeue, publisher with Timestamps = false"
    ];
    for (int i = 0; i < pairPaths.Length; i++)
    {
        string p = pairPaths[i];
        Console.Write($"| {pairLabels[i]} |");
        for (int cpu = 0; cpu < cpus; cpu++)
        {
            string ratio = i == 0 ? "1.00x" : $"{Med(pairRatio[(p, 64, cpu)]):F2}x";
            Console.Write($" {Med(pairs[(p, 3, cpu)]):F0} ns | {Med(pairs[(p, 64, cpu)]):F0} ns | {ratio} |");
        }
        Console.WriteLine();
    }
    Console.WriteLine(
        $"\nThe same dmaq pair from C (dmaq-call-bench's queue-send+recv, 64 B, the runs above): {cQueuePairNs:F0} ns; " +
        $"without timestamps: {cPlainPairNs:F0} ns. One read of the time-stamp counter, which the timestamp costs: {tscReadNs:F1} ns.");
    Console.WriteLine("\n| two processes, 64 B stream | msg/s | / Cloudtoid-shaped |\n|---|---|---|");
    string[] streamLabels = ["Cloudtoid-shaped, TryEnqueue / TryDequeue", "dmaq queue, Enqueue / TryDequeue (copying)",
                             "dmaq broadcast, Reserve + Commit / TryPeek + Release (zero-copy)",
                             $"dmaq broadcast, EnqueueMany / TryPeekMany + Release, batches of {Batch} (zero-copy reads)"];
    for (int i = 0; i < streamPaths.Length; i++)
    {
        string p = streamPaths[i];
        string ratio = i == 0 ? "1.00x" : $"{Med(streamRatio[p]):F2}x";
        Console.WriteLine($"| {streamLabels[i]} | {Med(streams[p]) / 1e6:F2} M | {ratio} |");
    }
    // The verdict is on the default options; Cloudtoid stamps nothing, so the
    // publisher without timestamps is the like-for-like pair, shown beside it.
    double bestStream = Math.Max(Med(streamRatio["dmaq-queue"]), Med(streamRatio["dmaq-broadcast-zc"]));
    Console.WriteLine("\n| target of the .NET issue | measured | verdict |\n|---|---|---|");
    for (int cpu = 0; cpu < cpus; cpu++)
    {
        double bestPair = Math.Min(Med(pairRatio[("dmaq", 64, cpu)]), Med(pairRatio[("dmaq-zc", 64, cpu)]));
        double plainPair = Med(pairRatio[("dmaq-no-timestamps", 64, cpu)]);
        Console.WriteLine($"| a pair in at most 0.5x Cloudtoid's time, CPU {cpu} | {bestPair:F2}x | {(bestPair <= 0.5 ? "met" : "**missed**")} |");
        Console.WriteLine($"| the same, publisher without timestamps (as Cloudtoid's), CPU {cpu} | {plainPair:F2}x | " +
                          $"{(plainPair <= 0.5 ? "met" : "**missed**")} |");
    }
    Console.WriteLine($"| a two-process 64 B stream at least 4x Cloudtoid's, a call per message | {bestStream:F2}x | {(bestStream >= 4 ? "met" : "**missed**")} |");
    double batchStream = Med(streamRatio["dmaq-broadcast-batch"]);
    Console.WriteLine($"| the same in batches of {Batch} (EnqueueMany, TryPeekMany) | {batchStream:F2}x | {(batchStream >= 4 ? "met" : "**missed**")} |");
}
