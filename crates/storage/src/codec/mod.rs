//! Column codecs and the segment format.
//!
//! OWNER: codec helper.
