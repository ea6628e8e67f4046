using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("Dmaq.Tests")]
