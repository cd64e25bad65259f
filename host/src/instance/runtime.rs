//! Runtime directories: where running instances live and how they are found.
//!
//! The base is `$FERROVISOR_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/ferrovisor`,
//! else `/tmp/ferrovisor-<uid>`; it and every instance directory are mode
//! 0700. An instance directory `<base>/<name>/` holds `pid` (the `ferrovisor
//! run` process), `token` (0600; clients present it on `api.sock`), `info`
//! (`key=value` lines: config, started), `api.sock`, `qemu-ctl.sock` and
//! `logs/<vm>.log`. A directory whose `pid` is not alive is stale.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable that overrides the runtime base directory.
pub const RUNTIME_ENV: &str = "FERROVISOR_RUNTIME_DIR";

/// The base directory of all instances.
pub fn base_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(RUNTIME_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("ferrovisor");
    }
    // SAFETY: getuid(2) has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    PathBuf::from(format!("/tmp/ferrovisor-{uid}"))
}

/// Whether `name` is a valid instance name (as a VM name: letters, digits,
/// `.` `_` `-`, starting with a letter or digit, at most 64 bytes).
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// An instance's directory and the files in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceDir {
    /// The instance's name.
    pub name: String,
    /// `<base>/<name>`.
    pub dir: PathBuf,
}

impl InstanceDir {
    /// The directory of instance `name` under `base`.
    pub fn new(base: &Path, name: &str) -> InstanceDir {
        InstanceDir {
            name: name.to_string(),
            dir: base.join(name),
        }
    }

    /// Clients' socket.
    pub fn api_socket(&self) -> PathBuf {
        self.dir.join("api.sock")
    }

    /// QEMU's end of the control device.
    pub fn qemu_socket(&self) -> PathBuf {
        self.dir.join("qemu-ctl.sock")
    }

    /// The `ferrovisor run` process id.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("pid")
    }

    /// The token clients present.
    pub fn token_file(&self) -> PathBuf {
        self.dir.join("token")
    }

    /// `key=value` facts about the instance.
    pub fn info_file(&self) -> PathBuf {
        self.dir.join("info")
    }

    /// Where VM console logs go.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// The console log of VM `vm`.
    pub fn vm_log(&self, vm: &str) -> PathBuf {
        self.log_dir().join(format!("{vm}.log"))
    }

    /// The pid in `pid`, if readable.
    pub fn pid(&self) -> Option<i32> {
        fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// `info`'s value for `key`.
    pub fn info(&self, key: &str) -> Option<String> {
        let text = fs::read_to_string(self.info_file()).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
    }

    /// The read-only token of the REST API (GETs only).
    pub fn token_ro_file(&self) -> PathBuf {
        self.dir.join("token.ro")
    }

    /// The REST API's unix socket.
    pub fn http_socket(&self) -> PathBuf {
        self.dir.join("http.sock")
    }

    /// The REST API's loopback TCP address (`--http`), when it has one.
    pub fn http_addr_file(&self) -> PathBuf {
        self.dir.join("http.addr")
    }

    /// The REST API's audit log (JSON lines).
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// The token, if readable.
    pub fn token(&self) -> io::Result<String> {
        let mut s = String::new();
        fs::File::open(self.token_file())?.read_to_string(&mut s)?;
        Ok(s.trim().to_string())
    }

    /// Whether its `run` process is alive.
    pub fn alive(&self) -> bool {
        self.pid().is_some_and(pid_alive)
    }

    /// Creates the directory for this process (0700) with `pid`, `token`
    /// (0600) and `info`. A stale directory of the same name is removed
    /// first; a live one is an error naming its pid.
    pub fn create(&self, info: &[(&str, String)]) -> Result<String, RuntimeError> {
        let base = self.dir.parent().unwrap_or(Path::new("/"));
        make_private_dir(base).map_err(|e| RuntimeError::Io(base.to_path_buf(), e))?;
        if self.dir.exists() {
            if let Some(pid) = self.pid().filter(|&p| pid_alive(p)) {
                return Err(RuntimeError::Running {
                    name: self.name.clone(),
                    pid,
                });
            }
            fs::remove_dir_all(&self.dir).map_err(|e| RuntimeError::Io(self.dir.clone(), e))?;
        }
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |e| RuntimeError::Io(p, e)
        };
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&self.dir)
            .map_err(io(&self.dir))?;
        fs::create_dir(self.log_dir()).map_err(io(&self.log_dir()))?;
        let token = random_token().map_err(io(Path::new("/dev/urandom")))?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.token_file())
            .map_err(io(&self.token_file()))?;
        writeln!(f, "{token}").map_err(io(&self.token_file()))?;
        let mut text = format!("name={}\nstarted={}\n", self.name, now_secs());
        for (k, v) in info {
            text.push_str(&format!("{k}={v}\n"));
        }
        fs::write(self.info_file(), text).map_err(io(&self.info_file()))?;
        fs::write(self.pid_file(), format!("{}\n", std::process::id()))
            .map_err(io(&self.pid_file()))?;
        Ok(token)
    }

    /// Removes the directory (at the end of `run`, or a stale one).
    pub fn remove(&self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn make_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = fs::metadata(dir)?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// 16 random bytes as hex (a token).
pub fn random_token() -> io::Result<String> {
    let mut b = [0u8; 16];
    fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Whether process `pid` exists.
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Every instance directory under `base`, sorted by name.
pub fn list(base: &Path) -> Vec<InstanceDir> {
    let mut v: Vec<InstanceDir> = fs::read_dir(base)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            valid_name(&name).then(|| InstanceDir::new(base, &name))
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Why an instance directory could not be made or found.
#[derive(Debug)]
pub enum RuntimeError {
    /// An instance of that name is running.
    Running {
        /// Its name.
        name: String,
        /// Its `run` process.
        pid: i32,
    },
    /// A file operation failed.
    Io(PathBuf, io::Error),
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeError::Running { name, pid } => write!(
                f,
                "an instance named `{name}` is already running (pid {pid}); give this one another name with --name"
            ),
            RuntimeError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for RuntimeError {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("web-1.a_b"));
        assert!(!valid_name(""));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"a".repeat(65)));
    }

    #[test]
    fn create_list_stale_and_running() {
        let base = std::env::temp_dir().join(format!("fv-rt-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let d = InstanceDir::new(&base, "one");
        let token = d.create(&[("config", "x.yaml".into())]).unwrap();
        assert_eq!(token.len(), 32);
        assert_eq!(d.token().unwrap(), token);
        assert_eq!(d.pid(), Some(std::process::id() as i32));
        assert!(d.alive());
        assert_eq!(d.info("config").as_deref(), Some("x.yaml"));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d.dir), 0o700);
        assert_eq!(mode(&d.token_file()), 0o600);
        assert_eq!(mode(&base), 0o700);
        // Our own pid is alive: a second create is refused.
        let err = d.create(&[]).unwrap_err();
        assert!(matches!(err, RuntimeError::Running { .. }), "{err}");
        // A dead pid makes it stale: create replaces it.
        fs::write(d.pid_file(), "999999999\n").unwrap();
        assert!(!d.alive());
        let t2 = d.create(&[]).unwrap();
        assert_ne!(t2, token);
        assert_eq!(list(&base), vec![d.clone()]);
        d.remove();
        assert!(list(&base).is_empty());
        let _ = fs::remove_dir_all(&base);
    }
}
