//! Finding the program as `execvp` does: a name with a `/` is a path, any
//! other name is looked up in the directories of `PATH`.

use crate::errno::Errno;
use crate::error::LoadError;

/// The search path when `PATH` is unset, or the program runs with secure
/// execution (its caller chose the environment).
pub const DEFAULT_PATH: &[u8] = b"/usr/local/bin:/usr/bin:/bin";

/// Whether `name` is taken as a path rather than searched in `PATH`.
pub fn is_path(name: &[u8]) -> bool {
    name.contains(&b'/')
}

/// The directories of a `PATH` value, in order; an empty entry is the
/// current directory.
pub fn path_dirs(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b':')
        .map(|dir| if dir.is_empty() { b"." as &[u8] } else { dir })
}

/// Tries `open(dir)` for each directory of `path` and returns the first
/// success with its directory. As execvp: a file found but not permitted
/// (EACCES) is remembered and reported if nothing else is found; every
/// other error moves on to the next directory.
pub fn search_path<'p, T>(
    path: &'p [u8],
    mut open: impl FnMut(&'p [u8]) -> Result<T, LoadError>,
) -> Result<(&'p [u8], T), LoadError> {
    let mut denied = false;
    for dir in path_dirs(path) {
        match open(dir) {
            Ok(found) => return Ok((dir, found)),
            Err(LoadError::Os(Errno::EACCES)) => denied = true,
            Err(_) => {}
        }
    }
    Err(if denied {
        LoadError::Os(Errno::EACCES)
    } else {
        LoadError::CommandNotFound
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_a_slash_are_paths() {
        assert!(is_path(b"./a"));
        assert!(is_path(b"/bin/ls"));
        assert!(!is_path(b"ls"));
    }

    #[test]
    fn empty_entries_are_the_current_directory() {
        let dirs: std::vec::Vec<&[u8]> = path_dirs(b":/bin::/usr/bin:").collect();
        let want: [&[u8]; 5] = [b".", b"/bin", b".", b"/usr/bin", b"."];
        assert_eq!(dirs, want);
    }

    #[test]
    fn first_hit_wins_and_denial_is_remembered() {
        let fs = |dir: &[u8]| match dir {
            b"/locked" => Err(LoadError::Os(Errno::EACCES)),
            b"/bin" => Ok(1),
            b"/usr/bin" => Ok(2),
            _ => Err(LoadError::Os(Errno::ENOENT)),
        };
        assert_eq!(
            search_path(b"/x:/bin:/usr/bin", fs),
            Ok((b"/bin" as &[u8], 1))
        );
        assert_eq!(
            search_path(b"/x:/locked:/y", fs),
            Err(LoadError::Os(Errno::EACCES))
        );
        assert_eq!(search_path(b"/x:/y", fs), Err(LoadError::CommandNotFound));
        assert_eq!(search_path(b"", fs), Err(LoadError::CommandNotFound));
    }
}
