//! reelbox
