// A Cloudtoid-shaped queue: the algorithm of Cloudtoid.Interprocess 2.x
// (https://github.com/cloudtoid/interprocess), written again here because
// its package does not restore on this machine (no nuget.org). It is the
// baseline the .NET issue measures dmaq against, in the same run:
//   - a memory-mapped file holding a header (read offset, write offset, a
//     read-lock timestamp) and a circular buffer;
//   - TryEnqueue: check capacity, claim space with a compare-and-swap on the
//     write offset, copy the body (wrapping at the end), then publish the
//     message header (state "ready", length), then post a POSIX semaphore
//     that blocking readers wait on;
//   - TryDequeue: take the read lock (a compare-and-swap of the timestamp),
//     wait for the message's state to turn "ready" and mark it consumed,
//     copy the body out, zero the message's bytes, move the read offset,
//     release the lock.
// It is not the package: figures from it are labelled as this shape.
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace Dmaq.Bench;

internal sealed unsafe partial class CloudtoidShaped : IDisposable
{
    [StructLayout(LayoutKind.Sequential)]
    private struct QueueHeader
    {
        public long ReadOffset, WriteOffset, ReadLockTimestamp, Reserved;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct MessageHeader
    {
        public int State, BodyLength;
    }

    private const int Ready = 2, Consumed = 1;
    private static readonly long LockTimeoutTicks = TimeSpan.FromSeconds(10).Ticks;

    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly QueueHeader* _header;
    private readonly byte* _buffer;
    private readonly long _capacity;
    private readonly nint _semaphore;

    public CloudtoidShaped(string name, long capacity)
    {
        _capacity = capacity;
        string path = $"/dev/shm/cloudtoid-shaped.{name}";
        var stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite);
        if (stream.Length < sizeof(QueueHeader) + capacity)
            stream.SetLength(sizeof(QueueHeader) + capacity);
        _file = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, false);
        _view = _file.CreateViewAccessor();
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _header = (QueueHeader*)p;
        _buffer = p + sizeof(QueueHeader);
        _semaphore = SemOpen($"/cloudtoid-shaped.{name}", 0x40 /* O_CREAT */, 0x180, 0);
        if (_semaphore == -1)
            throw new IOException($"sem_open failed: errno {Marshal.GetLastPInvokeError()}");
    }

    public static void Remove(string name)
    {
        File.Delete($"/dev/shm/cloudtoid-shaped.{name}");
        SemUnlink($"/cloudtoid-shaped.{name}");
    }

    private static long Padded(int bodyLength) => (sizeof(MessageHeader) + bodyLength + 7) & ~7L;

    public bool TryEnqueue(ReadOnlySpan<byte> message)
    {
        long length = Padded(message.Length);
        for (;;)
        {
            QueueHeader header = *_header;
            if (header.WriteOffset - header.ReadOffset + length > _capacity)
                return false;
            long at = header.WriteOffset;
            if (Interlocked.CompareExchange(ref _header->WriteOffset, at + length, at) != at)
                continue;
            Write(message, at + sizeof(MessageHeader));
            var mh = (MessageHeader*)(_buffer + at % _capacity);
            mh->BodyLength = message.Length;
            Interlocked.Exchange(ref mh->State, Ready);
            SemPost(_semaphore);
            return true;
        }
    }

    public bool TryDequeue(Span<byte> buffer, out int length)
    {
        length = 0;
        for (;;)
        {
            QueueHeader header = *_header;
            if (header.ReadOffset == header.WriteOffset)
                return false;
            long now = DateTime.UtcNow.Ticks, locked = header.ReadLockTimestamp;
            if (locked != 0 && now - locked < LockTimeoutTicks)
                continue; // another reader holds it
            if (Interlocked.CompareExchange(ref _header->ReadLockTimestamp, now, locked) != locked)
                continue;
            try
            {
                long at = _header->ReadOffset;
                var mh = (MessageHeader*)(_buffer + at % _capacity);
                while (Interlocked.CompareExchange(ref mh->State, Consumed, Ready) != Ready)
                    Thread.Yield(); // claimed but not yet written
                length = mh->BodyLength;
                Read(at + sizeof(MessageHeader), buffer[..length]);
                long total = Padded(length);
                Clear(at, total);
                Interlocked.Exchange(ref _header->ReadOffset, at + total);
                return true;
            }
            finally
            {
                Interlocked.Exchange(ref _header->ReadLockTimestamp, 0);
            }
        }
    }

    private void Write(ReadOnlySpan<byte> src, long offset)
    {
        long at = offset % _capacity;
        int first = (int)Math.Min(src.Length, _capacity - at);
        src[..first].CopyTo(new Span<byte>(_buffer + at, first));
        src[first..].CopyTo(new Span<byte>(_buffer, src.Length - first));
    }

    private void Read(long offset, Span<byte> dst)
    {
        long at = offset % _capacity;
        int first = (int)Math.Min(dst.Length, _capacity - at);
        new ReadOnlySpan<byte>(_buffer + at, first).CopyTo(dst);
        new ReadOnlySpan<byte>(_buffer, dst.Length - first).CopyTo(dst[first..]);
    }

    private void Clear(long offset, long length)
    {
        long at = offset % _capacity;
        int first = (int)Math.Min(length, _capacity - at);
        new Span<byte>(_buffer + at, first).Clear();
        new Span<byte>(_buffer, (int)length - first).Clear();
    }

    public void Dispose()
    {
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
        SemClose(_semaphore);
    }

    [LibraryImport("libc", EntryPoint = "sem_open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial nint SemOpen(string name, int flags, uint mode, uint value);

    [LibraryImport("libc", EntryPoint = "sem_post")]
    private static partial int SemPost(nint sem);

    [LibraryImport("libc", EntryPoint = "sem_close")]
    private static partial int SemClose(nint sem);

    [LibraryImport("libc", EntryPoint = "sem_unlink", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SemUnlink(string name);
}
