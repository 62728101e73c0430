//! placeholder until the nf_tables layer lands

use common::spec::Attachment;
use common::Result;
#[allow(unused)]
pub fn add(_n: &str, _c: &str, _i: &str, _h: &str, _m: [u8; 6]) -> Result<()> {
    Ok(())
}
pub fn del(_n: &str, _c: &str, _i: &str) -> Result<()> {
    Ok(())
}
#[allow(unused)]
pub fn check(_n: &str, _c: &str, _i: &str) -> Result<()> {
    Ok(())
}
pub fn gc(_n: &str, _v: &[Attachment]) -> Result<()> {
    Ok(())
}
