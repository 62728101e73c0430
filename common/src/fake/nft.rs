//! [`FakeNft`]: nf_tables of one netns of the fake kernel as [`Nftables`].

use std::cell::RefCell;
use std::rc::Rc;

use super::World;
use crate::lock::FileLock;
use crate::nft::{Batch, ChainInfo, Elem, Family, NftError, NftResult, Nftables, RuleInfo, SetInfo, Table};

/// nf_tables of one netns of a [`FakeKernel`](super::FakeKernel) (see
/// `FakeNet::nft`). Batches apply all or nothing, as in the kernel.
#[derive(Clone)]
pub struct FakeNft {
    w: Rc<RefCell<World>>,
    ns: usize,
}

impl FakeNft {
    pub(super) fn new(w: Rc<RefCell<World>>, ns: usize) -> FakeNft {
        FakeNft { w, ns }
    }

    fn act<T>(
        &self,
        op: &str,
        args: std::fmt::Arguments<'_>,
        f: impl FnOnce(&mut crate::nft::model::Model) -> NftResult<T>,
    ) -> NftResult<T> {
        let mut w = self.w.borrow_mut();
        w.call(self.ns, op, args).map_err(|err| NftError { what: op.to_string(), err })?;
        f(&mut w.spaces[self.ns].nft)
    }
}

impl Nftables for FakeNft {
    fn commit(&mut self, batch: &Batch) -> NftResult<()> {
        self.act("nft_commit", format_args!("{}", batch.describe()), |m| m.commit(batch))
    }
    fn list_tables(&mut self, family: Option<Family>) -> NftResult<Vec<Table>> {
        self.act("nft_list_tables", format_args!("{family:?}"), |m| Ok(m.list_tables(family)))
    }
    fn list_chains(&mut self, t: &Table) -> NftResult<Vec<ChainInfo>> {
        self.act("nft_list_chains", format_args!("{t}"), |m| Ok(m.list_chains(t)))
    }
    fn list_rules(&mut self, t: &Table, chain: &str) -> NftResult<Vec<RuleInfo>> {
        self.act("nft_list_rules", format_args!("{t}/{chain}"), |m| m.list_rules(t, chain))
    }
    fn list_sets(&mut self, t: &Table) -> NftResult<Vec<SetInfo>> {
        self.act("nft_list_sets", format_args!("{t}"), |m| m.list_sets(t))
    }
    fn list_elements(&mut self, t: &Table, set: &str) -> NftResult<Vec<Elem>> {
        self.act("nft_list_elements", format_args!("{t}/{set}"), |m| m.list_elements(t, set))
    }
    fn lock(&mut self, name: &str) -> crate::Result<Option<FileLock>> {
        self.act("nft_lock", format_args!("{name}"), |_| Ok(None)).map_err(Into::into)
    }
}
