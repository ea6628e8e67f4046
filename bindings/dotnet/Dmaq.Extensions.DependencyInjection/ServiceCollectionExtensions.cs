using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers dmaq with a service collection, as Cloudtoid's AddInterprocessQueue() does.</summary>
public static class DmaqServiceCollectionExtensions
{
    /// <summary>Registers a singleton <see cref="Dmaq.QueueFactory"/> (once, however often it is called).</summary>
    /// <param name="services">The service collection.</param>
    /// <returns><paramref name="services"/>, for chaining.</returns>
    public static IServiceCollection AddDmaqQueue(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddSingleton<Dmaq.QueueFactory>();
        return services;
    }

    /// <summary>The name Cloudtoid.Interprocess users know: the same as <see cref="AddDmaqQueue"/>.</summary>
    /// <param name="services">The service collection.</param>
    /// <returns><paramref name="services"/>, for chaining.</returns>
    public static IServiceCollection AddInterprocessQueue(this IServiceCollection services) => services.AddDmaqQueue();
}
