//! Hypercall error codes, mirroring `errno.h` (`enum xen_errno`, `XEN_EINVAL` etc.).
//!
//! A failing hypercall returns the negated value in RAX. `XEN_EINTR` (4) and `XEN_ERESTART` (85)
//! exist only under `__XEN__`: they are hypervisor-internal outcomes (preemption, continuation)
//! that never reach a guest, so they are deliberately not variants here and cannot be returned.

/// A Xen error code as seen by guests. The discriminant is the positive value; hypercalls return
/// [`Errno::neg`].
#[doc(alias = "xen_errno")]
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Errno {
    /// Operation not permitted.
    #[doc(alias = "XEN_EPERM")]
    EPERM = 1,
    /// No such file or directory.
    #[doc(alias = "XEN_ENOENT")]
    ENOENT = 2,
    /// No such process.
    #[doc(alias = "XEN_ESRCH")]
    ESRCH = 3,
    /// I/O error.
    #[doc(alias = "XEN_EIO")]
    EIO = 5,
    /// No such device or address.
    #[doc(alias = "XEN_ENXIO")]
    ENXIO = 6,
    /// Arg list too long.
    #[doc(alias = "XEN_E2BIG")]
    E2BIG = 7,
    /// Exec format error.
    #[doc(alias = "XEN_ENOEXEC")]
    ENOEXEC = 8,
    /// Bad file number.
    #[doc(alias = "XEN_EBADF")]
    EBADF = 9,
    /// No child processes.
    #[doc(alias = "XEN_ECHILD")]
    ECHILD = 10,
    /// Try again.
    #[doc(alias = "XEN_EAGAIN")]
    EAGAIN = 11,
    /// Out of memory.
    #[doc(alias = "XEN_ENOMEM")]
    ENOMEM = 12,
    /// Permission denied.
    #[doc(alias = "XEN_EACCES")]
    EACCES = 13,
    /// Bad address.
    #[doc(alias = "XEN_EFAULT")]
    EFAULT = 14,
    /// Device or resource busy.
    #[doc(alias = "XEN_EBUSY")]
    EBUSY = 16,
    /// File exists.
    #[doc(alias = "XEN_EEXIST")]
    EEXIST = 17,
    /// Cross-device link.
    #[doc(alias = "XEN_EXDEV")]
    EXDEV = 18,
    /// No such device.
    #[doc(alias = "XEN_ENODEV")]
    ENODEV = 19,
    /// Not a directory.
    #[doc(alias = "XEN_ENOTDIR")]
    ENOTDIR = 20,
    /// Is a directory.
    #[doc(alias = "XEN_EISDIR")]
    EISDIR = 21,
    /// Invalid argument.
    #[doc(alias = "XEN_EINVAL")]
    EINVAL = 22,
    /// File table overflow.
    #[doc(alias = "XEN_ENFILE")]
    ENFILE = 23,
    /// Too many open files.
    #[doc(alias = "XEN_EMFILE")]
    EMFILE = 24,
    /// No space left on device.
    #[doc(alias = "XEN_ENOSPC")]
    ENOSPC = 28,
    /// Read-only file system.
    #[doc(alias = "XEN_EROFS")]
    EROFS = 30,
    /// Too many links.
    #[doc(alias = "XEN_EMLINK")]
    EMLINK = 31,
    /// Math argument out of domain of func.
    #[doc(alias = "XEN_EDOM")]
    EDOM = 33,
    /// Math result not representable.
    #[doc(alias = "XEN_ERANGE")]
    ERANGE = 34,
    /// Resource deadlock would occur.
    #[doc(alias = "XEN_EDEADLK")]
    EDEADLK = 35,
    /// File name too long.
    #[doc(alias = "XEN_ENAMETOOLONG")]
    ENAMETOOLONG = 36,
    /// No record locks available.
    #[doc(alias = "XEN_ENOLCK")]
    ENOLCK = 37,
    /// Function not implemented.
    #[doc(alias = "XEN_ENOSYS")]
    ENOSYS = 38,
    /// Directory not empty.
    #[doc(alias = "XEN_ENOTEMPTY")]
    ENOTEMPTY = 39,
    /// No data available.
    #[doc(alias = "XEN_ENODATA")]
    ENODATA = 61,
    /// Timer expired.
    #[doc(alias = "XEN_ETIME")]
    ETIME = 62,
    /// Not a data message.
    #[doc(alias = "XEN_EBADMSG")]
    EBADMSG = 74,
    /// Value too large for defined data type.
    #[doc(alias = "XEN_EOVERFLOW")]
    EOVERFLOW = 75,
    /// Illegal byte sequence.
    #[doc(alias = "XEN_EILSEQ")]
    EILSEQ = 84,
    /// Socket operation on non-socket.
    #[doc(alias = "XEN_ENOTSOCK")]
    ENOTSOCK = 88,
    /// Message too long.
    #[doc(alias = "XEN_EMSGSIZE")]
    EMSGSIZE = 90,
    /// Operation not supported on transport endpoint.
    #[doc(alias = "XEN_EOPNOTSUPP")]
    EOPNOTSUPP = 95,
    /// Address already in use.
    #[doc(alias = "XEN_EADDRINUSE")]
    EADDRINUSE = 98,
    /// Cannot assign requested address.
    #[doc(alias = "XEN_EADDRNOTAVAIL")]
    EADDRNOTAVAIL = 99,
    /// No buffer space available.
    #[doc(alias = "XEN_ENOBUFS")]
    ENOBUFS = 105,
    /// Transport endpoint is already connected.
    #[doc(alias = "XEN_EISCONN")]
    EISCONN = 106,
    /// Transport endpoint is not connected.
    #[doc(alias = "XEN_ENOTCONN")]
    ENOTCONN = 107,
    /// Connection timed out.
    #[doc(alias = "XEN_ETIMEDOUT")]
    ETIMEDOUT = 110,
    /// Connection refused.
    #[doc(alias = "XEN_ECONNREFUSED")]
    ECONNREFUSED = 111,
}

impl Errno {
    /// `XEN_EWOULDBLOCK`: same value as [`Errno::EAGAIN`].
    #[doc(alias = "XEN_EWOULDBLOCK")]
    pub const EWOULDBLOCK: Errno = Errno::EAGAIN;
    /// `XEN_EDEADLOCK`: same value as [`Errno::EDEADLK`].
    #[doc(alias = "XEN_EDEADLOCK")]
    pub const EDEADLOCK: Errno = Errno::EDEADLK;

    /// Every variant, in ascending order.
    pub const ALL: [Errno; 47] = [
        Self::EPERM,
        Self::ENOENT,
        Self::ESRCH,
        Self::EIO,
        Self::ENXIO,
        Self::E2BIG,
        Self::ENOEXEC,
        Self::EBADF,
        Self::ECHILD,
        Self::EAGAIN,
        Self::ENOMEM,
        Self::EACCES,
        Self::EFAULT,
        Self::EBUSY,
        Self::EEXIST,
        Self::EXDEV,
        Self::ENODEV,
        Self::ENOTDIR,
        Self::EISDIR,
        Self::EINVAL,
        Self::ENFILE,
        Self::EMFILE,
        Self::ENOSPC,
        Self::EROFS,
        Self::EMLINK,
        Self::EDOM,
        Self::ERANGE,
        Self::EDEADLK,
        Self::ENAMETOOLONG,
        Self::ENOLCK,
        Self::ENOSYS,
        Self::ENOTEMPTY,
        Self::ENODATA,
        Self::ETIME,
        Self::EBADMSG,
        Self::EOVERFLOW,
        Self::EILSEQ,
        Self::ENOTSOCK,
        Self::EMSGSIZE,
        Self::EOPNOTSUPP,
        Self::EADDRINUSE,
        Self::EADDRNOTAVAIL,
        Self::ENOBUFS,
        Self::EISCONN,
        Self::ENOTCONN,
        Self::ETIMEDOUT,
        Self::ECONNREFUSED,
    ];

    /// The error with positive value `raw`, if it is one guests can see.
    pub const fn from_raw(raw: i32) -> Option<Errno> {
        Some(match raw {
            1 => Self::EPERM,
            2 => Self::ENOENT,
            3 => Self::ESRCH,
            5 => Self::EIO,
            6 => Self::ENXIO,
            7 => Self::E2BIG,
            8 => Self::ENOEXEC,
            9 => Self::EBADF,
            10 => Self::ECHILD,
            11 => Self::EAGAIN,
            12 => Self::ENOMEM,
            13 => Self::EACCES,
            14 => Self::EFAULT,
            16 => Self::EBUSY,
            17 => Self::EEXIST,
            18 => Self::EXDEV,
            19 => Self::ENODEV,
            20 => Self::ENOTDIR,
            21 => Self::EISDIR,
            22 => Self::EINVAL,
            23 => Self::ENFILE,
            24 => Self::EMFILE,
            28 => Self::ENOSPC,
            30 => Self::EROFS,
            31 => Self::EMLINK,
            33 => Self::EDOM,
            34 => Self::ERANGE,
            35 => Self::EDEADLK,
            36 => Self::ENAMETOOLONG,
            37 => Self::ENOLCK,
            38 => Self::ENOSYS,
            39 => Self::ENOTEMPTY,
            61 => Self::ENODATA,
            62 => Self::ETIME,
            74 => Self::EBADMSG,
            75 => Self::EOVERFLOW,
            84 => Self::EILSEQ,
            88 => Self::ENOTSOCK,
            90 => Self::EMSGSIZE,
            95 => Self::EOPNOTSUPP,
            98 => Self::EADDRINUSE,
            99 => Self::EADDRNOTAVAIL,
            105 => Self::ENOBUFS,
            106 => Self::EISCONN,
            107 => Self::ENOTCONN,
            110 => Self::ETIMEDOUT,
            111 => Self::ECONNREFUSED,
            _ => return None,
        })
    }

    /// The error a hypercall return value (`-errno`) denotes, if any.
    pub const fn from_ret(ret: i64) -> Option<Errno> {
        if ret >= 0 || ret < i32::MIN as i64 {
            return None;
        }
        Self::from_raw(-(ret as i32))
    }

    /// The positive value.
    pub const fn raw(self) -> i32 {
        self as i32
    }

    /// The value a hypercall returns in RAX for this error (`-EINVAL` = -22).
    pub const fn neg(self) -> i64 {
        -(self as i64)
    }

    /// The C name without the `XEN_` prefix (`"EINVAL"`), as xenstore sends it in `XS_ERROR`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::EPERM => "EPERM",
            Self::ENOENT => "ENOENT",
            Self::ESRCH => "ESRCH",
            Self::EIO => "EIO",
            Self::ENXIO => "ENXIO",
            Self::E2BIG => "E2BIG",
            Self::ENOEXEC => "ENOEXEC",
            Self::EBADF => "EBADF",
            Self::ECHILD => "ECHILD",
            Self::EAGAIN => "EAGAIN",
            Self::ENOMEM => "ENOMEM",
            Self::EACCES => "EACCES",
            Self::EFAULT => "EFAULT",
            Self::EBUSY => "EBUSY",
            Self::EEXIST => "EEXIST",
            Self::EXDEV => "EXDEV",
            Self::ENODEV => "ENODEV",
            Self::ENOTDIR => "ENOTDIR",
            Self::EISDIR => "EISDIR",
            Self::EINVAL => "EINVAL",
            Self::ENFILE => "ENFILE",
            Self::EMFILE => "EMFILE",
            Self::ENOSPC => "ENOSPC",
            Self::EROFS => "EROFS",
            Self::EMLINK => "EMLINK",
            Self::EDOM => "EDOM",
            Self::ERANGE => "ERANGE",
            Self::EDEADLK => "EDEADLK",
            Self::ENAMETOOLONG => "ENAMETOOLONG",
            Self::ENOLCK => "ENOLCK",
            Self::ENOSYS => "ENOSYS",
            Self::ENOTEMPTY => "ENOTEMPTY",
            Self::ENODATA => "ENODATA",
            Self::ETIME => "ETIME",
            Self::EBADMSG => "EBADMSG",
            Self::EOVERFLOW => "EOVERFLOW",
            Self::EILSEQ => "EILSEQ",
            Self::ENOTSOCK => "ENOTSOCK",
            Self::EMSGSIZE => "EMSGSIZE",
            Self::EOPNOTSUPP => "EOPNOTSUPP",
            Self::EADDRINUSE => "EADDRINUSE",
            Self::EADDRNOTAVAIL => "EADDRNOTAVAIL",
            Self::ENOBUFS => "ENOBUFS",
            Self::EISCONN => "EISCONN",
            Self::ENOTCONN => "ENOTCONN",
            Self::ETIMEDOUT => "ETIMEDOUT",
            Self::ECONNREFUSED => "ECONNREFUSED",
        }
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed hypercall, as the guest sees it: the negative value the hypercall returned, which is
/// `-errno` for every error Xen gives a guest. Kept raw so that a value [`Errno`] does not name is
/// still reported as it came; [`HypercallError::errno`] names it. `Display` prints the raw value
/// (`-22`), as the guest's logs and the conformance answers always have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HypercallError(i64);

impl HypercallError {
    /// `-ERESTART` (Xen's 85): hypervisor-internal, "call me again"; a preemptible operation
    /// (`XEN_DOMCTL_destroydomain`) may hand it to its caller, who asks again. [`Errno`] does
    /// not name it.
    pub const RESTART: HypercallError = HypercallError(-85);

    /// A hypercall's return value as a result: `Ok` with a non-negative value, the error otherwise.
    pub const fn check(ret: i64) -> Result<u64, HypercallError> {
        if ret < 0 {
            Err(HypercallError(ret))
        } else {
            Ok(ret as u64)
        }
    }

    /// The error a hypercall failing with `e` returns.
    pub const fn from_errno(e: Errno) -> HypercallError {
        HypercallError(e.neg())
    }

    /// The raw return value (negative).
    pub const fn ret(self) -> i64 {
        self.0
    }

    /// The error as an [`Errno`], when it is one Xen defines.
    pub const fn errno(self) -> Option<Errno> {
        Errno::from_ret(self.0)
    }
}

impl From<Errno> for HypercallError {
    fn from(e: Errno) -> Self {
        Self::from_errno(e)
    }
}

impl core::fmt::Display for HypercallError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypercall_errors_keep_the_raw_value() {
        assert_eq!(HypercallError::check(0), Ok(0));
        assert_eq!(HypercallError::check(7), Ok(7));
        let e = HypercallError::check(-22).unwrap_err();
        assert_eq!(e, HypercallError::from(Errno::EINVAL));
        assert_eq!(e.errno(), Some(Errno::EINVAL));
        assert_eq!(e.ret(), -22);
        assert_eq!(std::format!("{e}"), "-22");
        // A value Xen never returns to guests (ERESTART) is kept, unnamed.
        let odd = HypercallError::check(-85).unwrap_err();
        assert_eq!((odd.ret(), odd.errno()), (-85, None));
    }

    #[test]
    fn from_raw_round_trips_every_variant() {
        for e in Errno::ALL {
            assert_eq!(Errno::from_raw(e.raw()), Some(e));
            assert_eq!(Errno::from_ret(e.neg()), Some(e));
        }
        assert!(Errno::ALL.windows(2).all(|w| w[0].raw() < w[1].raw()));
    }

    #[test]
    fn internal_and_unknown_values_are_rejected() {
        // EINTR and ERESTART are hypervisor-internal; 0 and 4096 are not errors.
        for raw in [0, 4, 85, 4096, -22] {
            assert_eq!(Errno::from_raw(raw), None, "{raw}");
        }
        assert_eq!(Errno::from_ret(0), None);
        assert_eq!(Errno::from_ret(22), None);
        assert_eq!(Errno::from_ret(i64::MIN), None);
    }

    #[test]
    fn names_and_negation() {
        assert_eq!(Errno::EINVAL.name(), "EINVAL");
        assert_eq!(Errno::EINVAL.neg(), -22);
        assert_eq!(Errno::ENOSYS.neg(), -38);
        assert_eq!(Errno::EWOULDBLOCK, Errno::EAGAIN);
        assert_eq!(Errno::EDEADLOCK.raw(), 35);
        assert_eq!(std::format!("{}", Errno::EBUSY), "EBUSY");
    }
}
