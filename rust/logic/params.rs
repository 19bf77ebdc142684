// SPDX-License-Identifier: GPL-2.0

//! Values of oxdax's module parameters and how they are spelled.

/// Which code serves page faults on oxdax files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FaultEngine {
    /// The module's own fault handler, written in Rust.
    Oxdax = 0,
    /// The kernel's `dax_iomap_fault()`, driven by the same block-mapping
    /// callbacks: a reference to compare the Rust engine against.
    Iomap = 1,
}

impl FaultEngine {
    /// The engine used when nothing else is asked for.
    pub const DEFAULT: Self = Self::Oxdax;

    /// Every engine, in `repr` order.
    pub const ALL: [Self; 2] = [Self::Oxdax, Self::Iomap];

    /// The parameter spelling.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Oxdax => "oxdax",
            Self::Iomap => "iomap",
        }
    }

    /// [`Self::name`] with a terminating NUL, for C callers.
    pub const fn c_name(self) -> &'static [u8] {
        match self {
            Self::Oxdax => b"oxdax\0",
            Self::Iomap => b"iomap\0",
        }
    }

    /// Parses a parameter value. One trailing newline is accepted, as sysfs
    /// writes carry one (`sysfs_streq` semantics); anything else must match a
    /// name exactly.
    pub fn parse(value: &[u8]) -> Option<Self> {
        let value = value.strip_suffix(b"\n").unwrap_or(value);
        Self::ALL
            .into_iter()
            .find(|engine| engine.name().as_bytes() == value)
    }

    /// The engine whose `repr` is `value`.
    pub fn from_u8(value: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|engine| *engine as u8 == value)
    }
}

#[cfg(test)]
mod tests {
    use super::FaultEngine;

    #[test]
    fn parses_every_name_and_round_trips() {
        for engine in FaultEngine::ALL {
            assert_eq!(FaultEngine::parse(engine.name().as_bytes()), Some(engine));
            assert_eq!(FaultEngine::from_u8(engine as u8), Some(engine));
            let c_name = engine.c_name();
            assert_eq!(c_name.last(), Some(&0));
            assert_eq!(&c_name[..c_name.len() - 1], engine.name().as_bytes());
        }
    }

    #[test]
    fn accepts_one_trailing_newline_only() {
        assert_eq!(FaultEngine::parse(b"iomap\n"), Some(FaultEngine::Iomap));
        assert_eq!(FaultEngine::parse(b"iomap\n\n"), None);
        assert_eq!(FaultEngine::parse(b" iomap"), None);
    }

    #[test]
    fn rejects_anything_else() {
        for bad in [
            &b""[..],
            b"\n",
            b"ox",
            b"oxdaxx",
            b"OXDAX",
            b"Iomap",
            b"oxdax\0",
            b"1",
        ] {
            assert_eq!(FaultEngine::parse(bad), None, "{:?}", bad);
        }
        assert_eq!(FaultEngine::from_u8(2), None);
        assert_eq!(FaultEngine::from_u8(u8::MAX), None);
    }

    #[test]
    fn default_is_the_rust_engine() {
        assert_eq!(FaultEngine::DEFAULT, FaultEngine::Oxdax);
    }
}
