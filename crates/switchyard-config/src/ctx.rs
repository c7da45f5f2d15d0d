//! Validation context: turns spans into lines and checks the value kinds every section shares.

use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::duration::parse_duration;
use crate::error::{line_of, ConfigError, ConfigWarning};

pub(crate) struct Ctx<'a> {
    text: &'a str,
    origin: &'a str,
    base_dir: &'a Path,
    pub(crate) warnings: Vec<ConfigWarning>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(text: &'a str, origin: &'a str, base_dir: &'a Path) -> Self {
        Ctx {
            text,
            origin,
            base_dir,
            warnings: Vec::new(),
        }
    }

    pub(crate) fn line(&self, span: &Range<usize>) -> usize {
        line_of(self.text, span.start)
    }

    pub(crate) fn err(&self, span: &Range<usize>, key: &str, msg: impl Display) -> ConfigError {
        ConfigError {
            origin: self.origin.to_owned(),
            line: Some(self.line(span)),
            key: key.to_owned(),
            message: msg.to_string(),
        }
    }

    /// Error about a spanned value, located on that value.
    pub(crate) fn at<T>(&self, v: &Spanned<T>, key: &str, msg: impl Display) -> ConfigError {
        self.err(&v.span(), key, msg)
    }

    pub(crate) fn warn(&mut self, span: Option<&Range<usize>>, key: &str, msg: impl Display) {
        let line = span.map(|s| self.line(s));
        self.warn_line(line, key, msg);
    }

    /// For warnings about compiled values that only kept their line.
    pub(crate) fn warn_line(&mut self, line: Option<usize>, key: &str, msg: impl Display) {
        self.warnings.push(ConfigWarning {
            origin: self.origin.to_owned(),
            line,
            key: key.to_owned(),
            message: msg.to_string(),
        });
    }

    pub(crate) fn socket_addr(
        &self,
        v: Option<&Spanned<String>>,
        key: &str,
        default: SocketAddr,
    ) -> Result<SocketAddr, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        v.get_ref().trim().parse().map_err(|_| {
            let msg = format!(
                "invalid socket address {:?}: expected IP:PORT such as \"127.0.0.1:8080\"",
                v.get_ref()
            );
            self.at(v, key, msg)
        })
    }

    /// A window or timeout. Every duration key of this version is one, and zero would disable or
    /// break it, so zero is rejected here; a key where "0s" means something gets its own check.
    pub(crate) fn duration(
        &self,
        v: Option<&Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let d = parse_duration(v.get_ref()).map_err(|msg| self.at(v, key, msg))?;
        if d.is_zero() {
            return Err(self.at(v, key, "must be greater than 0s"));
        }
        Ok(d)
    }

    /// A fraction in `0..=1` (rates, fill levels, thresholds).
    pub(crate) fn fraction(
        &self,
        v: Option<&Spanned<f64>>,
        key: &str,
        default: f64,
    ) -> Result<f64, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let x = *v.get_ref();
        if (0.0..=1.0).contains(&x) {
            Ok(x)
        } else {
            Err(self.at(v, key, format!("must be between 0 and 1, got {x}")))
        }
    }

    /// A count that must be above zero.
    pub(crate) fn positive(
        &self,
        v: Option<&Spanned<u64>>,
        key: &str,
        default: u64,
    ) -> Result<u64, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        match *v.get_ref() {
            0 => Err(self.at(v, key, "must be greater than 0")),
            n => Ok(n),
        }
    }

    /// A byte size that must fit this platform's `usize` and be at least `min`.
    pub(crate) fn bytes(
        &self,
        v: Option<&Spanned<u64>>,
        key: &str,
        default: usize,
        min: usize,
    ) -> Result<usize, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let n = usize::try_from(*v.get_ref())
            .map_err(|_| self.at(v, key, "too large for this platform"))?;
        if n < min {
            return Err(self.at(v, key, format!("must be at least {min}, got {n}")));
        }
        Ok(n)
    }

    /// A file-system path, resolved against the config file's directory when relative.
    pub(crate) fn path(&self, v: &Spanned<String>, key: &str) -> Result<PathBuf, ConfigError> {
        if v.get_ref().trim().is_empty() {
            return Err(self.at(v, key, "must not be empty"));
        }
        Ok(self.resolve(Path::new(v.get_ref())))
    }

    pub(crate) fn resolve(&self, p: &Path) -> PathBuf {
        // `join` keeps absolute paths as they are, which is what users mean by them.
        self.base_dir.join(p)
    }
}

/// `[a-z0-9_-]+`: safe as a metric label and a URL segment.
pub(crate) fn is_label_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}
