//! The pure core: compare the base (state) with what each side holds now and decide what to do.
//! Nothing here touches a socket, a file or a terminal.

pub mod action;
pub mod budget;
pub mod fidelity;
pub mod folder_map;
pub mod gmail;
pub mod identity;
pub mod merge;
pub mod plan;
pub mod selection;
pub mod validate;

pub use action::Action;
pub use plan::{
    plan_folder, FlagUpdate, FolderInput, FolderPlan, Placement, PlacementReason, Policy, Removal,
};
