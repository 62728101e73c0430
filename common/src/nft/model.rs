//! nf_tables in memory, for the fake kernel: a [`Batch`] is read back from
//! its wire messages and applied as the kernel applies it (all of it or
//! nothing), and the listings answer from what is there.
//!
//! Modelled: tables, chains (with hooks), sets and maps with elements (key,
//! data, comment), rules (comment, position, handle; expressions kept as
//! bytes), and the refusals plugins meet: a missing table, chain, set,
//! element or rule (`ENOENT`, except for DESTROY), an element that exists
//! (`EEXIST` for create, or for add with other data), a wrong key length
//! (`EINVAL`), deleting a chain that still has rules or that a map jumps to
//! (`EBUSY`). Not modelled: what expressions do or refer to.

use super::*;
use crate::netlink::NLMSG_HDRLEN;

#[derive(Clone, Debug, Default)]
pub(crate) struct Model {
    tables: Vec<TableModel>,
}

#[derive(Clone, Debug)]
struct TableModel {
    table: Table,
    next_handle: u64,
    chains: Vec<(ChainInfo, Vec<RuleModel>)>,
    sets: Vec<(SetInfo, Vec<Elem>)>,
}

#[derive(Clone, Debug)]
struct RuleModel {
    handle: u64,
    comment: Option<String>,
    exprs: Vec<u8>,
}

type Errno = i32;

impl Model {
    /// Apply every command of `batch`, or none.
    pub(crate) fn commit(&mut self, batch: &Batch) -> NftResult<()> {
        let mut next = self.clone();
        for c in &batch.cmds {
            next.apply(&c.msg)
                .map_err(|errno| NftError { what: c.what.clone(), err: NlError { errno, ext: None } })?;
        }
        *self = next;
        Ok(())
    }

    fn apply(&mut self, msg: &Msg) -> Result<(), Errno> {
        let (ty, flags) = (msg.msg_type() & 0xff, msg.flags());
        let bytes = msg.clone().bytes(0);
        let payload = &bytes[NLMSG_HDRLEN..];
        let family = Family::from_u8(payload[0]).ok_or(libc::EAFNOSUPPORT)?;
        let a = Attrs::new(&payload[4..]);
        let text = |ty: u16| a.get(ty).map(|x| x.str().to_string()).ok_or(libc::EINVAL);
        let table = |ty: u16| Ok::<_, Errno>(Table::new(family, text(ty)?));
        match ty {
            MSG_NEWTABLE => {
                let t = table(TABLE_NAME)?;
                if self.table(&t).is_err() {
                    let tm = TableModel { table: t, next_handle: 1, chains: Vec::new(), sets: Vec::new() };
                    self.tables.push(tm);
                }
            }
            MSG_DELTABLE | MSG_DESTROYTABLE => {
                let t = table(TABLE_NAME)?;
                let before = self.tables.len();
                self.tables.retain(|x| x.table != t);
                if before == self.tables.len() && ty == MSG_DELTABLE {
                    return Err(libc::ENOENT);
                }
            }
            MSG_NEWCHAIN => {
                let tm = self.table(&table(CHAIN_TABLE)?)?;
                let name = text(CHAIN_NAME)?;
                if !tm.chains.iter().any(|(c, _)| c.name == name) {
                    let handle = tm.take_handle();
                    tm.chains.push((ChainInfo { name, handle, hook: hook_of(&a) }, Vec::new()));
                }
            }
            MSG_DELCHAIN => {
                let tm = self.table(&table(CHAIN_TABLE)?)?;
                let name = text(CHAIN_NAME)?;
                let i = tm.chains.iter().position(|(c, _)| c.name == name).ok_or(libc::ENOENT)?;
                let jumped = tm.sets.iter().flat_map(|(_, e)| e).any(|e| match &e.data {
                    Some(ElemData::Verdict(Verdict::Jump(c) | Verdict::Goto(c))) => *c == name,
                    _ => false,
                });
                if !tm.chains[i].1.is_empty() || jumped {
                    return Err(libc::EBUSY);
                }
                tm.chains.remove(i);
            }
            MSG_NEWSET => {
                let tm = self.table(&table(SET_TABLE)?)?;
                let name = text(SET_NAME)?;
                let u = |ty| a.get(ty).map_or(0, |x| x.u32_be());
                // A verdict's data is a struct nft_verdict: 16 bytes.
                let data_len = if u(SET_DATA_TYPE) == NFT_DATA_VERDICT { 16 } else { u(SET_DATA_LEN) };
                if !tm.sets.iter().any(|(s, _)| s.name == name) {
                    let info = SetInfo { name, flags: u(SET_FLAGS), key_len: u(SET_KEY_LEN), data_len };
                    tm.sets.push((info, Vec::new()));
                }
            }
            MSG_DELSET => {
                let tm = self.table(&table(SET_TABLE)?)?;
                let name = text(SET_NAME)?;
                let before = tm.sets.len();
                tm.sets.retain(|(s, _)| s.name != name);
                if before == tm.sets.len() {
                    return Err(libc::ENOENT);
                }
            }
            MSG_NEWSETELEM | MSG_DELSETELEM | MSG_DESTROYSETELEM => {
                let destroy = ty == MSG_DESTROYSETELEM;
                let t = table(ELEM_LIST_TABLE)?;
                let set = text(ELEM_LIST_SET)?;
                let found = self.table(&t).and_then(|tm| tm.set(&set));
                let (info, elems) = match found {
                    Ok(s) => s,
                    Err(_) if destroy => return Ok(()),
                    Err(e) => return Err(e),
                };
                for e in elems_of(&a) {
                    if e.key.len() as u32 != info.key_len {
                        return Err(libc::EINVAL);
                    }
                    let at = elems.iter().position(|x| x.key == e.key);
                    match (ty, at) {
                        (MSG_NEWSETELEM, Some(i)) if flags & NLM_F_EXCL != 0 || elems[i].data != e.data => {
                            return Err(libc::EEXIST)
                        }
                        (MSG_NEWSETELEM, Some(_)) => {}
                        (MSG_NEWSETELEM, None) => elems.push(e),
                        (_, Some(i)) => {
                            elems.remove(i);
                        }
                        (_, None) if destroy => {}
                        (_, None) => return Err(libc::ENOENT),
                    }
                }
            }
            MSG_NEWRULE => {
                let tm = self.table(&table(RULE_TABLE)?)?;
                let chain = text(RULE_CHAIN)?;
                let handle = tm.take_handle();
                let rules = tm.rules(&chain)?;
                let rule = RuleModel {
                    handle,
                    comment: a.get(RULE_USERDATA).and_then(|u| parse_comment(u.data)),
                    exprs: a.get(RULE_EXPRESSIONS).map(|x| x.data.to_vec()).unwrap_or_default(),
                };
                let append = flags & NLM_F_APPEND != 0;
                let at = match a.get(RULE_POSITION).map(|p| p.u64_be()) {
                    None if append => rules.len(),
                    None => 0,
                    Some(h) => {
                        rules.iter().position(|r| r.handle == h).ok_or(libc::ENOENT)? + append as usize
                    }
                };
                rules.insert(at, rule);
            }
            MSG_DELRULE => {
                let tm = self.table(&table(RULE_TABLE)?)?;
                let rules = tm.rules(&text(RULE_CHAIN)?)?;
                match a.get(RULE_HANDLE).map(|h| h.u64_be()) {
                    None => rules.clear(),
                    Some(h) => {
                        let i = rules.iter().position(|r| r.handle == h).ok_or(libc::ENOENT)?;
                        rules.remove(i);
                    }
                }
            }
            _ => return Err(libc::EOPNOTSUPP),
        }
        Ok(())
    }

    fn table(&mut self, t: &Table) -> Result<&mut TableModel, Errno> {
        self.tables.iter_mut().find(|x| x.table == *t).ok_or(libc::ENOENT)
    }

    fn find(&self, t: &Table) -> NftResult<&TableModel> {
        let missing =
            || NftError { what: format!("listing {t}"), err: NlError { errno: libc::ENOENT, ext: None } };
        self.tables.iter().find(|x| x.table == *t).ok_or_else(missing)
    }

    pub(crate) fn list_tables(&self, family: Option<Family>) -> Vec<Table> {
        self.tables.iter().map(|t| t.table.clone()).filter(|t| family.is_none_or(|f| t.family == f)).collect()
    }

    pub(crate) fn list_chains(&self, t: &Table) -> Vec<ChainInfo> {
        self.find(t).map(|tm| tm.chains.iter().map(|(c, _)| c.clone()).collect()).unwrap_or_default()
    }

    pub(crate) fn list_rules(&self, t: &Table, chain: &str) -> NftResult<Vec<RuleInfo>> {
        let chain_rules = self.find(t).ok().and_then(|tm| tm.chains.iter().find(|(c, _)| c.name == chain));
        let Some((_, rules)) = chain_rules else { return Ok(Vec::new()) };
        let info = |r: &RuleModel| RuleInfo {
            chain: chain.to_string(),
            handle: r.handle,
            comment: r.comment.clone(),
        };
        Ok(rules.iter().map(info).collect())
    }

    pub(crate) fn list_sets(&self, t: &Table) -> NftResult<Vec<SetInfo>> {
        Ok(self.find(t)?.sets.iter().map(|(s, _)| s.clone()).collect())
    }

    pub(crate) fn list_elements(&self, t: &Table, set: &str) -> NftResult<Vec<Elem>> {
        let missing = || NftError {
            what: format!("listing {t}/{set}"),
            err: NlError { errno: libc::ENOENT, ext: None },
        };
        let (_, elems) = self.find(t)?.sets.iter().find(|(s, _)| s.name == set).ok_or_else(missing)?;
        Ok(elems.clone())
    }

    /// One line per object, for the fake kernel's state.
    pub(crate) fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        for tm in &self.tables {
            let t = &tm.table;
            out.push(format!("nft table {t}"));
            for (c, rules) in &tm.chains {
                out.push(format!("nft chain {t}/{} hook {:?}", c.name, c.hook));
                for (i, r) in rules.iter().enumerate() {
                    let comment = r.comment.as_deref().unwrap_or("");
                    out.push(format!("nft rule {t}/{} #{i} {comment:?} ({} bytes)", c.name, r.exprs.len()));
                }
            }
            for (s, elems) in &tm.sets {
                out.push(format!("nft set {t}/{} flags {:#x}", s.name, s.flags));
                for e in elems {
                    let hex: String = e.key.iter().map(|b| format!("{b:02x}")).collect();
                    out.push(format!("nft element {t}/{} {hex} {:?} {:?}", s.name, e.data, e.comment));
                }
            }
        }
        out
    }
}

impl TableModel {
    fn take_handle(&mut self) -> u64 {
        self.next_handle += 1;
        self.next_handle - 1
    }

    fn rules(&mut self, chain: &str) -> Result<&mut Vec<RuleModel>, Errno> {
        self.chains.iter_mut().find(|(c, _)| c.name == chain).map(|(_, r)| r).ok_or(libc::ENOENT)
    }

    fn set(&mut self, name: &str) -> Result<(&SetInfo, &mut Vec<Elem>), Errno> {
        self.sets.iter_mut().find(|(s, _)| s.name == name).map(|(s, e)| (&*s, e)).ok_or(libc::ENOENT)
    }
}
