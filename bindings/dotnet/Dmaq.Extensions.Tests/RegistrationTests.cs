using Dmaq;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Dmaq.Extensions.Tests;

public class RegistrationTests
{
    [Fact]
    public void AddsOneSingletonFactory()
    {
        var services = new ServiceCollection();
        Assert.Same(services, services.AddDmaqQueue());
        services.AddInterprocessQueue(); // a second registration changes nothing
        var d = Assert.Single(services, s => s.ServiceType == typeof(QueueFactory));
        Assert.Equal(ServiceLifetime.Singleton, d.Lifetime);
        Assert.Equal(typeof(QueueFactory), d.ImplementationType);
        Assert.Throws<ArgumentNullException>(() => DmaqServiceCollectionExtensions.AddDmaqQueue(null!));
    }

    [Fact]
    public void TheRegisteredFactoryMakesWorkingQueues()
    {
        var services = new ServiceCollection().AddInterprocessQueue();
        var d = Assert.Single(services);
        var factory = (QueueFactory)Activator.CreateInstance(d.ImplementationType!)!;
        var options = new QueueOptions($"dotnet-di-{Environment.ProcessId}", 1 << 16);
        using var sub = factory.CreateSubscriber(options);
        using (var pub = factory.CreatePublisher(options))
            Assert.True(pub.TryEnqueue("through DI"u8));
        Assert.Equal("through DI"u8.ToArray(), sub.Dequeue());
        Channel.Unlink(options.Uri);
    }
}
