namespace Dmaq;

/// <summary>
/// A failed dmaq call: <see cref="Code"/> is the negative <c>DMAQ_E*</c> code,
/// <see cref="Exception.Message"/> the C library's detail (what exactly was wrong).
/// Each code has its own subclass.
/// </summary>
public class DmaqException : Exception
{
    /// <summary>The negative <c>DMAQ_E*</c> code.</summary>
    public int Code { get; }

    /// <summary>
    /// For a failed batch call (<see cref="Publisher.EnqueueMany"/>, <see cref="Subscriber.DequeueMany(Span{byte}, Span{int}, CancellationToken)"/>
    /// and their Try forms): how many of its messages were published, or received into the caller's buffers,
    /// before the failure. Those stand. 0 for every other call.
    /// </summary>
    public int Completed { get; internal set; }

    /// <summary>Makes an exception for <paramref name="code"/> with <paramref name="message"/>.</summary>
    public DmaqException(int code, string message) : base(message) => Code = code;

    /// <summary>The fixed description of a <c>DMAQ_E*</c> code.</summary>
    public static unsafe string Describe(int code) => Native.Text(Native.StrError(code));

    /// <summary>The exception for a failed call's <paramref name="code"/>, with the calling thread's detail.</summary>
    internal static unsafe DmaqException From(int code)
    {
        string detail = Native.Text(Native.LastError());
        if (detail.Length == 0)
            detail = Describe(code);
        return code switch
        {
            -1 => new DmaqInvalidArgumentException(detail),
            -2 => new DmaqSchemeException(detail),
            -3 => new DmaqNotFoundException(detail),
            -4 => new DmaqIncompatibleException(detail),
            -5 => new DmaqMessageTooLargeException(detail, null),
            -6 => new DmaqWouldBlockException(detail),
            -7 => new DmaqTimeoutException(detail),
            -8 => new DmaqLostException(detail, 0),
            -9 => new DmaqOverwrittenException(detail),
            -10 => new DmaqCorruptException(detail),
            -11 => new DmaqNotAChannelException(detail),
            -12 => new DmaqVersionException(detail),
            -13 => new DmaqLeaseException(detail),
            -14 => new DmaqBusyException(detail),
            -15 => new DmaqLimitException(detail),
            -16 => new DmaqOutOfMemoryException(detail),
            -17 => new DmaqNoSpaceException(detail),
            -18 => new DmaqPermissionException(detail),
            -19 => new DmaqSystemException(detail),
            _ => new DmaqException(code, detail),
        };
    }

    internal static void Check(int rc)
    {
        if (rc < 0)
            throw From(rc);
    }
}

/// <summary><c>DMAQ_EINVAL</c>: an argument or option is invalid.</summary>
public sealed class DmaqInvalidArgumentException(string m) : DmaqException(-1, m);
/// <summary><c>DMAQ_ESCHEME</c>: unknown or unavailable URI scheme.</summary>
public sealed class DmaqSchemeException(string m) : DmaqException(-2, m);
/// <summary><c>DMAQ_ENOENT</c>: the channel does not exist.</summary>
public sealed class DmaqNotFoundException(string m) : DmaqException(-3, m);
/// <summary><c>DMAQ_EINCOMPAT</c>: the channel exists with another kind, policy or size.</summary>
public sealed class DmaqIncompatibleException(string m) : DmaqException(-4, m);
/// <summary><c>DMAQ_EMSGSIZE</c>: the message is too large for the channel or the buffer.</summary>
public sealed class DmaqMessageTooLargeException(string m, int? needed) : DmaqException(-5, m)
{
    /// <summary>The length of the message that did not fit a receive buffer, if known.</summary>
    public int? Needed { get; } = needed;
}
/// <summary><c>DMAQ_EAGAIN</c>: the call would have to wait.</summary>
public sealed class DmaqWouldBlockException(string m) : DmaqException(-6, m);
/// <summary><c>DMAQ_ETIMEDOUT</c>: the timeout passed.</summary>
public sealed class DmaqTimeoutException(string m) : DmaqException(-7, m);
/// <summary><c>DMAQ_ELOST</c>: the overwrite policy lapped this subscriber; it resumes at the newest message.</summary>
public sealed class DmaqLostException(string m, ulong lost) : DmaqException(-8, m)
{
    /// <summary>How many messages were lost.</summary>
    public ulong Lost { get; } = lost;
}
/// <summary><c>DMAQ_EOVERWRITTEN</c>: a read lease was overwritten while held; discard what was read.</summary>
public sealed class DmaqOverwrittenException(string m) : DmaqException(-9, m);
/// <summary><c>DMAQ_ECORRUPT</c>: the channel is corrupt.</summary>
public sealed class DmaqCorruptException(string m) : DmaqException(-10, m);
/// <summary><c>DMAQ_ENOTCHAN</c>: the file is not a dmaq channel.</summary>
public sealed class DmaqNotAChannelException(string m) : DmaqException(-11, m);
/// <summary><c>DMAQ_EVERSION</c>: the channel has an unsupported layout version.</summary>
public sealed class DmaqVersionException(string m) : DmaqException(-12, m);
/// <summary><c>DMAQ_ELEASE</c>: the lease is not outstanding on this handle.</summary>
public sealed class DmaqLeaseException(string m) : DmaqException(-13, m);
/// <summary><c>DMAQ_EBUSY</c>: the handle already holds a lease.</summary>
public sealed class DmaqBusyException(string m) : DmaqException(-14, m);
/// <summary><c>DMAQ_ELIMIT</c>: too many publishers or subscribers on the channel.</summary>
public sealed class DmaqLimitException(string m) : DmaqException(-15, m);
/// <summary><c>DMAQ_ENOMEM</c>: out of memory.</summary>
public sealed class DmaqOutOfMemoryException(string m) : DmaqException(-16, m);
/// <summary><c>DMAQ_ENOSPC</c>: no space for the channel (is /dev/shm too small?).</summary>
public sealed class DmaqNoSpaceException(string m) : DmaqException(-17, m);
/// <summary><c>DMAQ_EACCES</c>: permission denied.</summary>
public sealed class DmaqPermissionException(string m) : DmaqException(-18, m);
/// <summary><c>DMAQ_ESYS</c>: an operating-system call failed.</summary>
public sealed class DmaqSystemException(string m) : DmaqException(-19, m);
