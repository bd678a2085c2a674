//! The dynamic linker's public view of what it has loaded: `struct
//! r_debug` (one per link-map namespace in glibc) and the `struct
//! link_map` list it heads (the SVR4 debugger
//! interface that gdb reads; glibc's and musl's layouts agree on these
//! fields), and which entries of a list are new since the last look.
//!
//! ld.so calls `_dl_debug_state` each time the list changes, with
//! `r_state` saying what it is doing; when it says [`RT_CONSISTENT`] after
//! a change, every library of the list is mapped.

/// Byte offsets in a 64-bit `struct r_debug`: `r_version` (int),
/// `r_map` (the first `link_map`), `r_brk`, `r_state` (int), `r_ldbase`.
pub const R_MAP: u64 = 8;
pub const R_STATE: u64 = 24;
/// `r_state`: the list is complete and stable.
pub const RT_CONSISTENT: u32 = 0;
/// glibc's `struct r_debug_extended` (`r_version` 2 and up) adds
/// `r_next`, the `r_debug` of the next link-map namespace.
pub const R_NEXT: u64 = 40;
/// No more namespaces than this are followed (glibc has 16).
pub const MAX_NAMESPACES: usize = 16;

/// Byte offsets in a 64-bit `struct link_map`: `l_addr` (the load bias),
/// `l_name` (the path ld.so opened, NUL-terminated; empty for the
/// program), `l_ld` (its dynamic section in memory), `l_next`.
pub const L_ADDR: u64 = 0;
pub const L_NAME: u64 = 8;
pub const L_LD: u64 = 16;
pub const L_NEXT: u64 = 24;

/// No list is followed further than this (a list that loops ends here).
pub const MAX_OBJECTS: usize = 1024;

/// One loaded object, as identified across looks: the entry's address, its
/// bias and its dynamic section. An object unloaded and another loaded
/// where it was differ in at least one of them, unless it is the same
/// file at the same place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Object {
    pub entry: u64,
    pub bias: u64,
    pub dynamic: u64,
}

/// The objects of the last look.
pub struct Seen {
    objects: heapless::Vec<Object, MAX_OBJECTS>,
}

impl Default for Seen {
    fn default() -> Self {
        Self::new()
    }
}

impl Seen {
    pub const fn new() -> Seen {
        Seen {
            objects: heapless::Vec::new(),
        }
    }

    /// Takes the list as it is now; calls `new` for each object that was
    /// not in the last look, in list order. Objects no longer in the list
    /// are forgotten, so one unloaded and loaded again counts as new.
    pub fn update(&mut self, now: &[Object], mut new: impl FnMut(&Object)) {
        for o in now {
            if !self.objects.contains(o) {
                new(o);
            }
        }
        self.objects.clear();
        for o in now.iter().take(MAX_OBJECTS) {
            let _ = self.objects.push(*o);
        }
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(entry: u64, bias: u64) -> Object {
        Object {
            entry,
            bias,
            dynamic: bias + 0x100,
        }
    }

    fn news(seen: &mut Seen, now: &[Object]) -> Vec<u64> {
        let mut v = vec![];
        seen.update(now, |o| v.push(o.entry));
        v
    }

    #[test]
    fn reports_each_object_once_and_again_after_an_unload() {
        let mut seen = Seen::new();
        let (a, b, c) = (o(1, 0x1000), o(2, 0x2000), o(3, 0x3000));
        assert_eq!(news(&mut seen, &[a, b]), [1, 2]);
        assert_eq!(news(&mut seen, &[a, b]), Vec::<u64>::new());
        assert_eq!(news(&mut seen, &[a, b, c]), [3]);
        // c unloaded, then loaded again at the same place: new again.
        assert_eq!(news(&mut seen, &[a, b]), Vec::<u64>::new());
        assert_eq!(news(&mut seen, &[a, b, c]), [3]);
        // Another object in a freed entry, elsewhere: new.
        assert_eq!(news(&mut seen, &[a, b, o(3, 0x9000)]), [3]);
        assert_eq!(seen.len(), 3);
    }
}
