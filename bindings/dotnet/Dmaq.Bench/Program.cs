// What the .NET binding's calls cost against the same calls from C
// (dmaq-call-bench, bench/call_overhead.c), in one session: 64-byte
// messages, one process each, a ring nothing waits on. This machine's speed
// drifts, so short .NET and C runs alternate and each figure is a median.
// Prints a Markdown section.
using System.Diagnostics;
using Dmaq;

if (args.Length == 3 && args[0] == "stream-publisher") // the other process of the stream
{
    var streamOptions = new QueueOptions(args[1], 1 << 20) { Kind = ChannelKind.Queue };
    using var publisher = new QueueFactory().CreatePublisher(streamOptions);
    var message = new byte[64];
    for (long i = 0, n = long.Parse(args[2]); i < n; i++)
        publisher.Enqueue(message);
    return 0;
}
if (args.Length < 1)
{
    Console.Error.WriteLine("usage: Dmaq.Bench PATH/TO/dmaq-call-bench [PAIRS]");
    return 2;
}
string cBench = args[0];
int pairs = args.Length > 1 ? int.Parse(args[1]) : 21;
const int Round = 1000, Rounds = 200, Size = 64;

var options = new QueueOptions($"dotnet-bench-{Environment.ProcessId}", 1 << 20) { Kind = ChannelKind.Broadcast };
var factory = new QueueFactory();
using var pub = factory.CreatePublisher(options);
using var sub = factory.CreateSubscriber(options);
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
    var info = new ProcessStartInfo("dotnet") { ArgumentList = { System.Reflection.Assembly.GetEntryAssembly()!.Location, "stream-publisher", name, StreamMessages.ToString() } };
    using var child = Process.Start(info)!;
    var b = new byte[64];
    s.Dequeue(b);
    long t0 = Stopwatch.GetTimestamp();
    for (long i = 1; i < StreamMessages; i++)
        s.Dequeue(b);
    double rate = (StreamMessages - 1) / Stopwatch.GetElapsedTime(t0).TotalSeconds;
    child.WaitForExit();
    Channel.Unlink(streamOptions.Uri);
    return rate;
}

double CStream()
{
    var info = new ProcessStartInfo(cBench) { RedirectStandardOutput = true, ArgumentList = { "--stream", StreamMessages.ToString() } };
    using var p = Process.Start(info)!;
    double rate = double.Parse(p.StandardOutput.ReadToEnd().Split(' ')[1]);
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
for (int k = 0; k < pairs; k++)
{
    var cr = CRates();
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
Channel.Unlink(options.Uri);
return sink > 0 ? 0 : 1;
