using System.Diagnostics;
using Dmaq;
using Xunit;

namespace Dmaq.Tests;

/// <summary>
/// .NET and C peers on one channel, in separate processes, on every kind:
/// a .NET publisher with C subscribers and a C publisher with .NET
/// subscribers, every message checksummed and checked on arrival; over
/// shm:// and over tcp:// (this process binding the channel, the peers
/// connecting).
/// </summary>
public class CrossTests
{
    private const int Count = 3000, Subscribers = 2;
    private static int _serial;

    private static string CPeer =>
        Environment.GetEnvironmentVariable("DMAQ_TEST_PEER") is { Length: > 0 } p
            ? p
            : Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../../../build/tests/dmaq-test-peer"));

    private static Process Spawn(string lang, params string[] args)
    {
        var info = lang == "c"
            ? new ProcessStartInfo(CPeer)
            : new ProcessStartInfo("dotnet") { ArgumentList = { Path.Combine(AppContext.BaseDirectory, "Dmaq.Peer.dll") } };
        foreach (var a in args)
            info.ArgumentList.Add(a);
        info.RedirectStandardError = true; /* a failing peer says why in the assertion (peers write little there) */
        return Process.Start(info) ?? throw new InvalidOperationException("could not start " + info.FileName);
    }

    private static int FreePort()
    {
        var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        l.Start();
        int port = ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    [Theory]
    [InlineData(ChannelKind.Queue, OverflowPolicy.Block, "dotnet", "c", "shm")]
    [InlineData(ChannelKind.Queue, OverflowPolicy.Block, "c", "dotnet", "shm")]
    [InlineData(ChannelKind.Broadcast, OverflowPolicy.Block, "dotnet", "c", "shm")]
    [InlineData(ChannelKind.Broadcast, OverflowPolicy.Block, "c", "dotnet", "shm")]
    [InlineData(ChannelKind.Broadcast, OverflowPolicy.Overwrite, "dotnet", "c", "shm")]
    [InlineData(ChannelKind.Broadcast, OverflowPolicy.Overwrite, "c", "dotnet", "shm")]
    [InlineData(ChannelKind.Queue, OverflowPolicy.Block, "dotnet", "c", "tcp")]
    [InlineData(ChannelKind.Queue, OverflowPolicy.Block, "c", "dotnet", "tcp")]
    [InlineData(ChannelKind.Broadcast, OverflowPolicy.Block, "dotnet", "c", "tcp")]
    [InlineData(ChannelKind.Broadcast, OverflowPolicy.Block, "c", "dotnet", "tcp")]
    [InlineData(ChannelKind.Broadcast, OverflowPolicy.Overwrite, "dotnet", "c", "tcp")]
    [InlineData(ChannelKind.Broadcast, OverflowPolicy.Overwrite, "c", "dotnet", "tcp")]
    public void PeersInTwoLanguages(ChannelKind kind, OverflowPolicy policy, string pubLang, string subLang, string scheme)
    {
        Assert.True(File.Exists(CPeer), $"the C peer is not built: {CPeer} (set DMAQ_TEST_PEER)");
        bool tcp = scheme == "tcp";
        var options = new QueueOptions($"dotnet-cross-{Environment.ProcessId}-{Interlocked.Increment(ref _serial)}",
                                       // An overwriting ring holds the whole stream: a fast
                                       // publisher could otherwise lap a subscriber that has not started.
                                       policy == OverflowPolicy.Overwrite ? 1 << 21 : 1 << 16)
        { Kind = kind, Policy = policy, MaxMessageSize = 2048,
          Endpoint = tcp ? $"tcp://127.0.0.1:{FreePort()}" : null, Bind = tcp };
        // shm: create the channel and let go; tcp: this process hosts it throughout.
        Publisher? host = new QueueFactory().CreatePublisher(options);
        if (!tcp)
        {
            host.Dispose();
            host = null;
        }
        string dir = Directory.CreateTempSubdirectory("dmaq-cross").FullName;
        try
        {
            var outs = Enumerable.Range(0, Subscribers).Select(i => Path.Combine(dir, $"sub{i}")).ToArray();
            var subs = outs.Select(o => Spawn(subLang, "sub", options.Uri, Count.ToString(), o)).ToArray();
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (Channel.Stat(options.Uri).Subscribers < Subscribers)
            {
                Assert.True(DateTime.UtcNow < deadline, "subscribers did not attach");
                Thread.Sleep(10);
            }
            using (var pub = Spawn(pubLang, "pub", options.Uri, Count.ToString(), "1"))
            {
                Assert.True(pub.WaitForExit(120_000), "publisher hung");
                Assert.True(pub.ExitCode == 0, $"publisher exited {pub.ExitCode}: {pub.StandardError.ReadToEnd()}");
            }
            if (kind == ChannelKind.Queue)
            {
                var stopper = host ?? new QueueFactory().CreatePublisher(options);
                for (int i = 0; i < Subscribers; i++)
                    stopper.Enqueue("DMAQSTOP"u8);
                if (stopper != host)
                    stopper.Dispose();
            }
            foreach (var s in subs)
            {
                Assert.True(s.WaitForExit(120_000), "subscriber hung");
                Assert.True(s.ExitCode == 0, $"subscriber exited {s.ExitCode}: {s.StandardError.ReadToEnd()}");
                s.Dispose();
            }
            var results = outs.Select(o => File.ReadAllText(o).Split(' ', StringSplitOptions.TrimEntries)
                                              .Select(kv => kv.Split('='))
                                              .ToDictionary(kv => kv[0], kv => long.Parse(kv[1]))).ToArray();
            string all = string.Join("; ", outs.Select(File.ReadAllText));
            foreach (var r in results)
            {
                Assert.True(r["bad"] == 0, "corrupt messages: " + all);
                Assert.True(r["order"] == 0, "out of order: " + all);
            }
            if (kind == ChannelKind.Queue)
                Assert.True(results.Sum(r => r["received"]) == Count, "each message once: " + all);
            else
                foreach (var r in results)
                {
                    Assert.True(r["received"] + r["lost"] == Count, "every message accounted for: " + all);
                    Assert.True(r["received"] > 0, "messages arrived: " + all);
                    if (policy == OverflowPolicy.Block)
                        Assert.True(r["lost"] == 0, "block loses nothing: " + all);
                }
        }
        finally
        {
            Directory.Delete(dir, true);
            if (host is null)
                Channel.Unlink(options.Uri);
            host?.Dispose();
        }
    }
}
