using System.Buffers.Binary;
using System.Numerics;

namespace Dmaq.Testing;

/// <summary>The checksummed message format of the C test peers (tests/payload.h), with XXH64.</summary>
public static class Payload
{
    private const ulong P1 = 0x9E3779B185EBCA87, P2 = 0xC2B2AE3D27D4EB4F, P3 = 0x165667B19E3779F9,
        P4 = 0x85EBCA77C2B2AE63, P5 = 0x27D4EB2F165667C5;
    public const int Head = 16;

    private static ulong Round(ulong acc, ulong lane) => BitOperations.RotateLeft(acc + lane * P2, 31) * P1;
    private static ulong Merge(ulong acc, ulong v) => (acc ^ Round(0, v)) * P1 + P4;

    public static ulong Xxh64(ReadOnlySpan<byte> d, ulong seed)
    {
        int n = d.Length, i = 0;
        ulong h;
        if (n >= 32)
        {
            ulong v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
            for (; i + 32 <= n; i += 32)
            {
                v1 = Round(v1, BinaryPrimitives.ReadUInt64LittleEndian(d[i..]));
                v2 = Round(v2, BinaryPrimitives.ReadUInt64LittleEndian(d[(i + 8)..]));
                v3 = Round(v3, BinaryPrimitives.ReadUInt64LittleEndian(d[(i + 16)..]));
                v4 = Round(v4, BinaryPrimitives.ReadUInt64LittleEndian(d[(i + 24)..]));
            }
            h = BitOperations.RotateLeft(v1, 1) + BitOperations.RotateLeft(v2, 7) + BitOperations.RotateLeft(v3, 12) +
                BitOperations.RotateLeft(v4, 18);
            h = Merge(Merge(Merge(Merge(h, v1), v2), v3), v4);
        }
        else
            h = seed + P5;
        h += (ulong)n;
        for (; i + 8 <= n; i += 8)
            h = BitOperations.RotateLeft(h ^ Round(0, BinaryPrimitives.ReadUInt64LittleEndian(d[i..])), 27) * P1 + P4;
        if (i + 4 <= n)
        {
            h = BitOperations.RotateLeft(h ^ (BinaryPrimitives.ReadUInt32LittleEndian(d[i..]) * P1), 23) * P2 + P3;
            i += 4;
        }
        for (; i < n; i++)
            h = BitOperations.RotateLeft(h ^ (d[i] * P5), 11) * P1;
        h ^= h >> 33;
        h *= P2;
        h ^= h >> 29;
        h *= P3;
        return h ^ (h >> 32);
    }

    /// <summary>Fills <paramref name="m"/> (at least 16 bytes) with a sealed message.</summary>
    public static void Seal(Span<byte> m, uint key, uint index, Random rng)
    {
        rng.NextBytes(m[Head..]);
        BinaryPrimitives.WriteUInt32LittleEndian(m, key);
        BinaryPrimitives.WriteUInt32LittleEndian(m[4..], index);
        BinaryPrimitives.WriteUInt64LittleEndian(m[8..], Xxh64(m[Head..], (ulong)key << 32 | index));
    }

    /// <summary>(key, index) of an intact message, (0, -1) for an intact short one, null if corrupt.</summary>
    public static (uint Key, long Index)? Check(ReadOnlySpan<byte> m)
    {
        if (m.Length < Head)
        {
            for (int i = 0; i < m.Length; i++)
                if (m[i] != (byte)(m.Length * 31 + i))
                    return null;
            return (0, -1);
        }
        uint key = BinaryPrimitives.ReadUInt32LittleEndian(m), index = BinaryPrimitives.ReadUInt32LittleEndian(m[4..]);
        ulong h = BinaryPrimitives.ReadUInt64LittleEndian(m[8..]);
        return Xxh64(m[Head..], (ulong)key << 32 | index) == h ? (key, index) : null;
    }
}
