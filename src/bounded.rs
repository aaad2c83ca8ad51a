//! Reading a file kube-aws did not necessarily write, as it must be read: only a regular
//! file, never more than a limit (whatever its metadata claims, for a device or a growing
//! file), and for the cluster directory's own files never through a link that leaves it.

use std::io::{self, Read};
use std::path::Path;

/// The largest cluster.yaml or template override kube-aws reads.
pub const CLUSTER_FILE_LIMIT: u64 = 4 * 1024 * 1024;

/// The largest plan, state, audit entry or lock kube-aws reads: a plan of many pool stacks
/// carries each template, and CloudFormation takes templates of up to 1 MB.
pub const RECORD_LIMIT: u64 = 64 * 1024 * 1024;

/// The bytes of the regular file at `path`, at most `limit` of them; a device, FIFO, socket
/// or directory, or a larger file, is an error that says so (and reads nothing from it).
pub fn read(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let kind = std::fs::metadata(path)?.file_type();
    if !kind.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file ({})", describe(kind)),
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than the {limit} bytes kube-aws reads"),
        ));
    }
    Ok(bytes)
}

/// Like [`read`], for a file of the cluster directory `dir`: a symbolic link that resolves
/// outside `dir` is refused, so an override can never make kube-aws read (and echo in an
/// error) a file that is not the cluster's.
pub fn read_in(dir: &Path, relative: &str, limit: u64) -> io::Result<Vec<u8>> {
    let path = dir.join(relative);
    let resolved = std::fs::canonicalize(&path)?;
    let root = std::fs::canonicalize(dir)?;
    if !resolved.starts_with(&root) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "it links to {}, outside the cluster directory",
                resolved.display()
            ),
        ));
    }
    read(&path, limit)
}

fn describe(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_links_out_and_oversized_files_are_refused_without_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("ok.yaml"), b"a: 1\n").unwrap();
        assert_eq!(read_in(d, "ok.yaml", 100).unwrap(), b"a: 1\n");
        std::os::unix::fs::symlink("/dev/zero", d.join("zero.yaml")).unwrap();
        let e = read(&d.join("zero.yaml"), 100).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
        let fifo = d.join("fifo.yaml");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let e = read(&fifo, 100).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        std::os::unix::fs::symlink("/etc/passwd", d.join("passwd.yaml")).unwrap();
        let e = read_in(d, "passwd.yaml", 1 << 20).unwrap_err();
        assert!(
            e.to_string().contains("outside the cluster directory"),
            "{e}"
        );
        assert!(!e.to_string().contains("root:"), "{e}");
        std::fs::write(d.join("big.yaml"), vec![b'x'; 101]).unwrap();
        let e = read(&d.join("big.yaml"), 100).unwrap_err();
        assert!(e.to_string().contains("larger than the 100 bytes"), "{e}");
        let e = read(d, 100).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
    }
}
