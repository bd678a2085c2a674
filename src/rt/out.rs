//! Buffered output for reports larger than one line.

use super::sys;
use hugeload::fmt::Line;

/// A buffered writer to a file descriptor.
pub struct Out {
    fd: sys::Fd,
    buf: [u8; 16384],
    len: usize,
}

impl Out {
    pub fn new(fd: sys::Fd) -> Out {
        Out {
            fd,
            buf: [0; 16384],
            len: 0,
        }
    }

    pub fn put(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(self.buf.len()) {
            if self.len + chunk.len() > self.buf.len() {
                self.flush();
            }
            self.buf[self.len..self.len + chunk.len()].copy_from_slice(chunk);
            self.len += chunk.len();
        }
    }
    pub fn line(&mut self, l: &Line) {
        self.put(l.as_bytes());
    }
    pub fn flush(&mut self) {
        sys::write_all(self.fd, &self.buf[..self.len]);
        self.len = 0;
    }
}
