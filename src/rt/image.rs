//! Carrying out a plan for one image: the reservation, the huge ranges on
//! their backends, then every other page from the file as the kernel would.

use super::file::OpenFile;
use super::host::Host;
use super::huge::{self, Outcomes, Placed, Target};
use super::map;
use hugeload::elf::Image;
use hugeload::error::LoadError;
use hugeload::options::{Backend, Settings};
use hugeload::plan::{self, Plan, Range, Ranges};

/// Where a program's image goes, decided before anything is mapped.
pub enum Placement {
    /// A PIE: the reservation is made at the mapping phase, near where the
    /// kernel would put it, with the layout's phase.
    Pie(plan::PieLayout),
    /// Fixed addresses (ET_EXEC): the plan as it is.
    Fixed(Plan),
}

/// Plans the program `image` (the planning phase: pure, nothing mapped).
pub fn plan_program(image: &Image, settings: &Settings) -> Placement {
    if image.is_dyn() {
        Placement::Pie(plan::pie_layout(image, settings.strategy))
    } else {
        let window = Range::new(image.lo(), image.hi());
        Placement::Fixed(plan::plan(image, 0, settings.strategy, window))
    }
}

/// A loaded image.
pub struct Loaded {
    pub bias: u64,
    pub plan: Plan,
    pub outcomes: Outcomes,
}

impl Loaded {
    pub fn entry(&self, image: &Image) -> u64 {
        self.bias + image.e_entry
    }
    pub fn phdr(&self, image: &Image) -> u64 {
        self.bias + image.phdr_vaddr
    }
    /// The ranges that really are on huge pages, adjacent pieces merged.
    pub fn huge_ranges(&self) -> Placed {
        huge::placed(&self.outcomes)
    }
    /// One past the highest address the image occupies.
    pub fn end(&self) -> u64 {
        self.plan.reserve.end
    }
}

/// Reserves and maps the program `image` as `placement` says, with its
/// text on huge pages as `settings` ask.
pub fn map_program(
    file: &OpenFile,
    image: &Image,
    placement: Placement,
    name: &[u8],
    settings: &Settings,
    host: &Host,
) -> Result<Loaded, LoadError> {
    let plan = match placement {
        Placement::Pie(layout) => {
            let bias = map::reserve_pie(host, layout.rel_start, layout.len, layout.phase)?;
            layout.plan.moved_to(bias)
        }
        Placement::Fixed(plan) => {
            map::reserve_fixed(plan.reserve.start, plan.reserve.len())?;
            plan
        }
    };
    let mut outcomes = Outcomes::new();
    if settings.backend != Backend::Off {
        let target = Target {
            file,
            image,
            bias: plan.bias,
            name,
            copy_from_memory: false,
        };
        outcomes = huge::place_ranges(&target, &plan.huge, settings.backend, host);
    }
    let loaded = Loaded {
        bias: plan.bias,
        plan,
        outcomes,
    };
    map::map_ordinary(file, image, loaded.bias, Range::ALL, &loaded.huge_ranges())?;
    Ok(loaded)
}

/// PT_INTERP mode: the kernel has mapped `image` at `bias`. Each planned
/// huge range is built elsewhere and moved over the kernel's mapping; a
/// range that fails keeps the kernel's mapping. Aggressive rounding stays
/// inside the image: the addresses around it are not hugeload's. Under a
/// debugger the bytes come from the kernel's mapping, so breakpoints
/// already set there are kept.
pub fn remap_in_place(
    file: &OpenFile,
    image: &Image,
    bias: u64,
    name: &[u8],
    settings: &Settings,
    host: &Host,
) -> Loaded {
    let window = Range::new(bias + image.lo(), bias + image.hi());
    let plan = plan::plan(image, bias, settings.strategy, window);
    let target = Target {
        file,
        image,
        bias,
        name,
        copy_from_memory: host.traced,
    };
    let outcomes = huge::place_ranges(&target, &plan.huge, settings.backend, host);
    Loaded {
        bias,
        plan,
        outcomes,
    }
}

/// Reserves and maps an interpreter (or any image) on ordinary pages.
pub fn map_plain(file: &OpenFile, image: &Image) -> Result<Loaded, LoadError> {
    let bias = map::reserve_plain(image)?;
    let plan = Plan {
        bias,
        huge: Ranges::new(),
        reserve: Range::new(bias + image.lo(), bias + image.hi()),
    };
    map::map_ordinary(file, image, bias, Range::ALL, &[])?;
    Ok(Loaded {
        bias,
        plan,
        outcomes: Outcomes::new(),
    })
}
