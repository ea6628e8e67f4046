using System.Diagnostics;
using Xunit;

namespace Dmaq.Tests;

/// <summary>
/// `dotnet pack` makes a package that a fresh console project takes from a
/// local folder and runs, with the native library found on its own: no
/// copying, no LD_LIBRARY_PATH.
/// </summary>
public class PackTests
{
    private static string Run(string workDir, string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { WorkingDirectory = workDir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
            info.ArgumentList.Add(a);
        info.Environment.Remove("LD_LIBRARY_PATH");
        using var p = Process.Start(info)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(300_000), $"{file} {string.Join(' ', args)} hung");
        Assert.True(p.ExitCode == 0, $"{file} {string.Join(' ', args)} failed:\n{stdout.Result}\n{stderr.Result}");
        return stdout.Result;
    }

    [Fact]
    public void APackedPackageRunsInAFreshProject()
    {
        string project = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../Dmaq/Dmaq.csproj"));
        string root = Directory.CreateTempSubdirectory("dmaq-pack").FullName;
        try
        {
            string feed = Path.Combine(root, "feed"), app = Path.Combine(root, "app");
            Run(root, "dotnet", "pack", project, "-c", "Release", "-o", feed, "-p:BaseOutputPath=" + root + "/bin/");
            string nupkg = Directory.GetFiles(feed, "Dmaq.*.nupkg").Single();
            string version = Path.GetFileNameWithoutExtension(nupkg)["Dmaq.".Length..];
            using (var zip = System.IO.Compression.ZipFile.OpenRead(nupkg))
                Assert.Contains(zip.Entries, e => e.FullName == "runtimes/linux-x64/native/libdmaq.so");

            Directory.CreateDirectory(app);
            File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
                <configuration><packageSources><clear /><add key="feed" value="{feed}" /></packageSources></configuration>
                """);
            File.WriteAllText(Path.Combine(app, "app.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType><TargetFramework>net10.0</TargetFramework><ImplicitUsings>enable</ImplicitUsings>
                    <RestorePackagesPath>{root}/packages</RestorePackagesPath>
                  </PropertyGroup>
                  <ItemGroup><PackageReference Include="Dmaq" Version="{version}" /></ItemGroup>
                </Project>
                """);
            File.WriteAllText(Path.Combine(app, "Program.cs"), """
                using Dmaq;
                var options = new QueueOptions($"pack-consumer-{Environment.ProcessId}", 1 << 16);
                var factory = new QueueFactory();
                using var sub = factory.CreateSubscriber(options);
                using (var pub = factory.CreatePublisher(options))
                    pub.Enqueue("from the package"u8);
                Console.WriteLine(System.Text.Encoding.UTF8.GetString(sub.Dequeue()) + " " + Channel.LibraryVersion);
                Channel.Unlink(options.Uri);
                """);
            string output = Run(app, "dotnet", "run");
            Assert.Contains("from the package " + version, output);
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }
}
