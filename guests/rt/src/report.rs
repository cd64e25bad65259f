//! The test-guest protocol: `PASS:` / `FAIL:` lines, the `DONE:` line, and
//! the shutdown that ends the run.

use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::{guest_name, println, sbi};

/// Counts and prints check results. One per guest ([`reporter`]); usable from
/// every hart.
#[derive(Debug)]
pub struct Reporter {
    passed: AtomicUsize,
    failed: AtomicUsize,
}

static REPORTER: Reporter = Reporter {
    passed: AtomicUsize::new(0),
    failed: AtomicUsize::new(0),
};

/// The guest's reporter.
pub fn reporter() -> &'static Reporter {
    &REPORTER
}

impl Reporter {
    /// Prints `PASS: <guest>/<check>`.
    pub fn pass(&self, check: &str) {
        self.passed.fetch_add(1, Ordering::SeqCst);
        println!("PASS: {}/{}", guest_name(), check);
    }

    /// Prints `FAIL: <guest>/<check>: <detail>`.
    pub fn fail(&self, check: &str, detail: fmt::Arguments<'_>) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        println!("FAIL: {}/{}: {}", guest_name(), check, detail);
    }

    /// PASS if `ok`, else FAIL with `detail`. Returns `ok`.
    pub fn check(&self, check: &str, ok: bool, detail: fmt::Arguments<'_>) -> bool {
        if ok {
            self.pass(check);
        } else {
            self.fail(check, detail);
        }
        ok
    }

    /// PASS if `got == want`, else FAIL "got .., expected ..".
    pub fn check_eq<T: PartialEq + fmt::Debug>(&self, check: &str, got: T, want: T) -> bool {
        let ok = got == want;
        self.check(
            check,
            ok,
            format_args!("got {:?}, expected {:?}", got, want),
        )
    }

    /// PASS if the SBI call returned error code `want`, else FAIL showing the
    /// whole result.
    pub fn check_sbi_error(&self, check: &str, got: sbi::Ret, want: isize) -> bool {
        self.check(
            check,
            got.error == want,
            format_args!(
                "got {}, expected error={} ({})",
                got,
                want,
                sbi::error_name(want)
            ),
        )
    }

    /// False if `check` is listed in `fv.skip=<check>[,<check>…]` on the
    /// kernel command line (`/chosen/bootargs`); then it prints
    /// `FAIL: <guest>/<check>: not run (fv.skip)`, so a skipped check never
    /// looks like a pass. For runs on an SBI implementation known to hang on a
    /// check (see the guest's docs).
    pub fn should_run(&self, check: &str) -> bool {
        let skipped = crate::platform::get()
            .bootargs()
            .split_ascii_whitespace()
            .filter_map(|a| a.strip_prefix("fv.skip="))
            .flat_map(|list| list.split(','))
            .any(|c| c == check);
        if skipped {
            self.fail(
                check,
                format_args!("not run (fv.skip on the kernel command line)"),
            );
        }
        !skipped
    }

    /// Checks passed so far.
    pub fn passed(&self) -> usize {
        self.passed.load(Ordering::SeqCst)
    }

    /// Checks failed so far.
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }

    /// Adds `n` passed checks made elsewhere (e.g. before a reboot).
    pub fn add_passed(&self, n: usize) {
        self.passed.fetch_add(n, Ordering::SeqCst);
    }

    /// Adds `n` failed checks made elsewhere (e.g. before a reboot).
    pub fn add_failed(&self, n: usize) {
        self.failed.fetch_add(n, Ordering::SeqCst);
    }

    /// Prints `DONE: <guest> passed=<n> failed=<m>` and shuts down with SBI
    /// SRST (reason "no reason" if nothing failed, else "system failure").
    pub fn finish(&self) -> ! {
        let (p, f) = (self.passed(), self.failed());
        println!("DONE: {} passed={} failed={}", guest_name(), p, f);
        sbi::shutdown(f == 0)
    }
}

/// A check name built at run time (e.g. `"ipi-to-hart" + 3`), on the stack.
#[derive(Clone, Copy)]
pub struct Name {
    buf: [u8; 64],
    len: usize,
}

impl Name {
    /// A name starting with `prefix` (truncated at 64 bytes).
    pub fn new(prefix: &str) -> Self {
        let mut n = Name {
            buf: [0; 64],
            len: 0,
        };
        n.push(prefix);
        n
    }

    /// Appends `s`.
    pub fn push(&mut self, s: &str) -> &mut Self {
        for &b in s.as_bytes() {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
        self
    }

    /// Appends `n` in decimal.
    pub fn num(&mut self, n: usize) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            if let Some(d) = digits.get_mut(i) {
                *d = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 || i == 0 {
                break;
            }
        }
        let tail = digits.get(i..).unwrap_or(&[]);
        self.push(core::str::from_utf8(tail).unwrap_or("?"))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.buf.get(..self.len).unwrap_or(&[])).unwrap_or("?")
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl core::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// `prefix` followed by `n` in decimal, as a check name.
pub fn name(prefix: &str, n: usize) -> Name {
    let mut s = Name::new(prefix);
    s.num(n);
    s
}
