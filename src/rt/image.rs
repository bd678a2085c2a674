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
/// A PIE's base is chosen so that its main text is congruent with its
/// file offsets when the page cache may serve it (no copy), else so that
/// the most text goes on huge pages.
pub fn plan_program(image: &Image, settings: &Settings) -> Placement {
    if image.is_dyn() {
        let from_cache = settings.backend.uses_page_cache();
        let phase = plan::congruent_phase(image)
            .filter(|_| from_cache)
            .unwrap_or_else(|| plan::choose_phase(image, settings.strategy));
        Placement::Pie(plan::pie_layout(image, settings.strategy, phase))
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
    /// The ranges on huge pages that are copies (not the file's page cache):
    /// what a profiler needs a perf map for.
    pub fn copied_ranges(&self) -> Placed {
        huge::placed_where(&self.outcomes, |k| k != huge::HugeKind::PageCache)
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
    place_and_map(file, image, plan, name, settings, host)
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

/// PT_INTERP mode, a PIE the kernel placed at `bias` off the 2 MiB grid:
/// maps it again at a bias congruent with its main text's file offsets
/// (the nearest below, else above, where the address space is free), so
/// the page cache can serve its text, and gives back what the kernel had
/// mapped there. Only before any of the program has run, and never under
/// a debugger (its breakpoints are in the kernel's mapping). `None` when
/// it stays where it is.
pub fn move_to_congruent(
    file: &OpenFile,
    image: &Image,
    bias: u64,
    name: &[u8],
    settings: &Settings,
    host: &Host,
) -> Option<Result<Loaded, LoadError>> {
    let from_cache = settings.backend.uses_page_cache();
    if !image.is_dyn() || host.traced || !from_cache {
        return None;
    }
    let phase = plan::congruent_phase(image)?;
    if bias % plan::HUGE == phase {
        return None;
    }
    let layout = plan::pie_layout(image, settings.strategy, phase);
    let old = Range::new(bias + image.lo(), bias + image.hi());
    let down = plan::huge_down(bias.checked_sub(phase)?) + phase;
    let new_bias = [down, down + plan::HUGE].into_iter().find(|&b| {
        let start = b as i128 + layout.rel_start as i128;
        let end = start + layout.len as i128;
        start >= 0x10000
            && end <= super::arch::USER_TOP as i128
            && map::take_over(old, Range::new(start as u64, end as u64)).is_ok()
    })?;
    // Point of no return for the move: the old mapping is gone.
    let plan = layout.plan.moved_to(new_bias);
    Some(place_and_map(file, image, plan, name, settings, host))
}

/// Places the huge ranges of `plan` (its reservation made) and maps the
/// rest of the image from the file.
fn place_and_map(
    file: &OpenFile,
    image: &Image,
    plan: Plan,
    name: &[u8],
    settings: &Settings,
    host: &Host,
) -> Result<Loaded, LoadError> {
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
