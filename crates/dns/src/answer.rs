//! Answering one query from a [`DnsZone`]: bytes in, bytes out, no I/O.
//!
//! A query is parsed in place (no copy of the message), its name folded into a key on the
//! stack, the answer resolved into a plan of references into the zone, and the plan
//! written with `domain`'s message builder into a buffer the caller may reuse. With a
//! reused buffer a query allocates nothing (see the `allocations` test).

use std::net::IpAddr;

use domain::base::iana::{Class, Opcode, OptRcode, Rcode, Rtype};
use domain::base::message_builder::{AnswerBuilder, PushError, StaticCompressor};
use domain::base::name::{Name, ParsedName, ToName};
use domain::base::opt::{Opt, OptRecord};
use domain::base::{Message, MessageBuilder, Question, Serial, Ttl};
use domain::rdata::{A, Aaaa, Cname, Ns, Ptr, Soa, Srv, Txt};

use crate::name::NameKey;
use crate::zone::{
    DnsZone, Lookup, MAX_CHAIN, Node, SOA_EXPIRE, SOA_REFRESH, SOA_RETRY, VERSION_TTL, ZoneId,
};

/// How the query arrived; it sets the largest response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: 512 octets, or the client's EDNS buffer size capped by the server's.
    Udp,
    /// TCP: 65535 octets.
    Tcp,
}

/// What the server should do with the query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the response written into the buffer.
    Reply,
    /// The name is outside the owned zones (or a reverse name svcnet does not know) and
    /// an upstream is configured: forward the query as it is.
    Forward,
    /// Send nothing: not a DNS query (too short for a header, or a response).
    Drop,
}

/// Response codes svcnet sends, for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResponseCode {
    /// NOERROR (with or without answers).
    NoError,
    /// FORMERR: a malformed query.
    FormErr,
    /// SERVFAIL: upstream failed.
    ServFail,
    /// NXDOMAIN: no such name.
    NxDomain,
    /// NOTIMP: an opcode other than QUERY, or MAILA/MAILB.
    NotImp,
    /// REFUSED: zone transfers, other classes, names svcnet does not serve.
    Refused,
    /// BADVERS: an EDNS version other than 0.
    BadVers,
    /// Any other code (from an upstream).
    Other(u16),
}

impl ResponseCode {
    /// The mnemonic (`NOERROR`, `NXDOMAIN`...).
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseCode::NoError => "NOERROR",
            ResponseCode::FormErr => "FORMERR",
            ResponseCode::ServFail => "SERVFAIL",
            ResponseCode::NxDomain => "NXDOMAIN",
            ResponseCode::NotImp => "NOTIMP",
            ResponseCode::Refused => "REFUSED",
            ResponseCode::BadVers => "BADVERS",
            ResponseCode::Other(_) => "OTHER",
        }
    }

    pub(crate) fn from_opt(rcode: OptRcode) -> ResponseCode {
        match rcode.to_int() {
            0 => ResponseCode::NoError,
            1 => ResponseCode::FormErr,
            2 => ResponseCode::ServFail,
            3 => ResponseCode::NxDomain,
            4 => ResponseCode::NotImp,
            5 => ResponseCode::Refused,
            16 => ResponseCode::BadVers,
            n => ResponseCode::Other(n),
        }
    }
}

/// The result of [`DnsZone::answer_into`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Reply, forward or drop.
    pub action: Action,
    /// The query type (0 when the question could not be read).
    pub qtype: u16,
    /// The response code written (NOERROR for Forward and Drop).
    pub rcode: ResponseCode,
    /// The TC bit was set: the answer did not fit in the UDP size.
    pub truncated: bool,
    /// The answer came from svcnet's zones (AA set).
    pub authoritative: bool,
    /// The answer ends in a CNAME to a name outside the owned zones (an ExternalName
    /// Service); a server with an upstream appends the target's records.
    pub chase_upstream: bool,
}

impl Outcome {
    fn drop() -> Outcome {
        Outcome {
            action: Action::Drop,
            qtype: 0,
            rcode: ResponseCode::NoError,
            truncated: false,
            authoritative: false,
            chase_upstream: false,
        }
    }
}

/// The name of a query type for metrics and logs (`A`, `AAAA`, `TYPE65`...).
pub fn qtype_name(qtype: u16) -> String {
    Rtype::from_int(qtype).to_string()
}

/// The EDNS(0) part of a query.
#[derive(Clone, Copy, Debug)]
struct Edns {
    udp_size: u16,
    version: u8,
    dnssec_ok: bool,
}

/// A query that passed every check, borrowing the message.
struct Query<'a> {
    question: Question<ParsedName<&'a [u8]>>,
    edns: Option<Edns>,
}

/// What to write: the CNAME chain, the final node, the code and the negative SOA.
struct Plan<'z> {
    /// CNAME targets, in order; the owner of the first is the query name.
    chain: [&'z [u8]; MAX_CHAIN],
    chain_len: usize,
    last: Last<'z>,
    rcode: Rcode,
    /// The zone whose SOA goes in the authority section (negative answers).
    soa: Option<ZoneId>,
    /// The chain ends at a name outside the owned zones.
    out_of_zone: bool,
}

enum Last<'z> {
    Node(&'z Node),
    Pod(IpAddr),
    None,
}

impl DnsZone {
    /// Answers a query in wire format. Convenience over [`DnsZone::answer_into`] with a
    /// fresh buffer; the buffer is empty unless the action is [`Action::Reply`].
    pub fn answer(&self, query: &[u8], transport: Transport) -> (Vec<u8>, Outcome) {
        let mut out = Vec::with_capacity(512);
        let outcome = self.answer_into(query, transport, &mut out);
        (out, outcome)
    }

    /// Answers a query in wire format into `out` (cleared first; its capacity is reused).
    /// Never panics on any input: a malformed query gets FORMERR, a message that is not a
    /// query is dropped.
    pub fn answer_into(&self, query: &[u8], transport: Transport, out: &mut Vec<u8>) -> Outcome {
        out.clear();
        let Ok(msg) = Message::from_octets(query) else {
            return Outcome::drop();
        };
        if msg.header().qr() {
            return Outcome::drop();
        }
        let (query, error) = match parse_query(&msg) {
            Ok(q) => (Some(q), None),
            Err(e) => (None, Some(e)),
        };
        let Some(query) = query else {
            let (rcode, edns) = error.unwrap_or((OptRcode::FORMERR, None));
            return self.write_error(&msg, None, edns, rcode, transport, out);
        };
        let qtype = query.question.qtype();
        if msg.header().opcode() != Opcode::QUERY {
            return self.write_error(
                &msg,
                Some(&query.question),
                query.edns,
                OptRcode::NOTIMP,
                transport,
                out,
            );
        }
        if let Some(edns) = query.edns
            && edns.version != 0
        {
            return self.write_error(
                &msg,
                Some(&query.question),
                query.edns,
                OptRcode::BADVERS,
                transport,
                out,
            );
        }
        let refuse = |out: &mut Vec<u8>| {
            self.write_error(
                &msg,
                Some(&query.question),
                query.edns,
                OptRcode::REFUSED,
                transport,
                out,
            )
        };
        match qtype {
            Rtype::AXFR | Rtype::IXFR => return refuse(out),
            Rtype::OPT | Rtype::TSIG | Rtype::TKEY => {
                return self.write_error(
                    &msg,
                    Some(&query.question),
                    query.edns,
                    OptRcode::FORMERR,
                    transport,
                    out,
                );
            }
            t if t.to_int() == 253 || t.to_int() == 254 => {
                // MAILB, MAILA: obsolete meta types.
                return self.write_error(
                    &msg,
                    Some(&query.question),
                    query.edns,
                    OptRcode::NOTIMP,
                    transport,
                    out,
                );
            }
            _ => {}
        }
        if query.question.qclass() != Class::IN {
            return refuse(out);
        }
        let Some(key) = NameKey::from_labels(query.question.qname().iter()) else {
            return self.write_error(
                &msg,
                Some(&query.question),
                query.edns,
                OptRcode::FORMERR,
                transport,
                out,
            );
        };
        let Some(zone) = self.zone_of(&key) else {
            if self.forward {
                return self.forward_outcome(qtype);
            }
            return refuse(out);
        };
        let plan = match self.resolve(&key, zone, qtype) {
            Some(plan) => plan,
            None => return self.forward_outcome(qtype),
        };
        self.write_answer(&msg, &query, &plan, transport, out)
    }

    /// SERVFAIL for a query that was to be forwarded (upstream failed or too busy).
    pub(crate) fn servfail_into(
        &self,
        query: &[u8],
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Outcome {
        out.clear();
        let Ok(msg) = Message::from_octets(query) else {
            return Outcome::drop();
        };
        match parse_query(&msg) {
            Ok(q) => self.write_error(
                &msg,
                Some(&q.question),
                q.edns,
                OptRcode::SERVFAIL,
                transport,
                out,
            ),
            Err((_, edns)) => {
                self.write_error(&msg, None, edns, OptRcode::SERVFAIL, transport, out)
            }
        }
    }

    fn forward_outcome(&self, qtype: Rtype) -> Outcome {
        Outcome {
            action: Action::Forward,
            qtype: qtype.to_int(),
            rcode: ResponseCode::NoError,
            truncated: false,
            authoritative: false,
            chase_upstream: false,
        }
    }

    /// Resolves a name of an owned zone. `None`: forward instead (a reverse name svcnet
    /// has no PTR for, with an upstream configured).
    fn resolve(&self, key: &NameKey, zone: ZoneId, qtype: Rtype) -> Option<Plan<'_>> {
        let mut plan = Plan {
            chain: [&[]; MAX_CHAIN],
            chain_len: 0,
            last: Last::None,
            rcode: Rcode::NOERROR,
            soa: None,
            out_of_zone: false,
        };
        let mut current: Option<NameKey> = None;
        let mut zone = zone;
        loop {
            let k = current.as_ref().unwrap_or(key);
            let found = self.lookup(k);
            if self.forward && zone != ZoneId::Cluster {
                // With an upstream, only addresses svcnet knows are answered here.
                let known = matches!(found, Lookup::Node(n) if !n.ptr.is_empty());
                if !known {
                    if plan.chain_len == 0 {
                        return None;
                    }
                    return Some(plan);
                }
            }
            match found {
                Lookup::Nothing => {
                    plan.rcode = Rcode::NXDOMAIN;
                    plan.soa = Some(zone);
                    return Some(plan);
                }
                Lookup::Pod(ip) => {
                    let has = match qtype {
                        Rtype::A => ip.is_ipv4(),
                        Rtype::AAAA => ip.is_ipv6(),
                        Rtype::ANY => true,
                        _ => false,
                    };
                    plan.last = Last::Pod(ip);
                    if !has {
                        plan.soa = Some(zone);
                    }
                    return Some(plan);
                }
                Lookup::Node(node) => {
                    if let Some(target) = &node.cname
                        && qtype != Rtype::CNAME
                        && qtype != Rtype::ANY
                    {
                        if plan.chain_len == MAX_CHAIN {
                            // A loop or an absurd chain: answer what was followed.
                            return Some(plan);
                        }
                        plan.chain[plan.chain_len] = target;
                        plan.chain_len += 1;
                        let Some(next) = NameKey::from_wire(target) else {
                            return Some(plan);
                        };
                        let Some(next_zone) = self.zone_of(&next) else {
                            // Out of the zone: the CNAME is the answer (the server
                            // may chase it upstream).
                            plan.out_of_zone = true;
                            return Some(plan);
                        };
                        zone = next_zone;
                        current = Some(next);
                        continue;
                    }
                    plan.last = Last::Node(node);
                    if count(node, qtype) == 0 {
                        plan.soa = Some(zone);
                    }
                    return Some(plan);
                }
            }
        }
    }

    /// Writes the answer of a plan, setting TC and leaving the records out when it does
    /// not fit.
    fn write_answer(
        &self,
        msg: &Message<&[u8]>,
        query: &Query<'_>,
        plan: &Plan<'_>,
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let limit = self.limit(query.edns, transport);
        let qtype = query.question.qtype();
        let mut outcome = Outcome {
            action: Action::Reply,
            qtype: qtype.to_int(),
            rcode: ResponseCode::from_opt(OptRcode::from_rcode(plan.rcode)),
            truncated: false,
            authoritative: true,
            chase_upstream: plan.out_of_zone && self.forward,
        };
        let buf = std::mem::take(out);
        match self.compose(msg, query, Some(plan), plan.rcode, limit, false, buf) {
            Ok(buf) => *out = buf,
            Err(buf) => {
                outcome.truncated = true;
                outcome.chase_upstream = false;
                // Header, question and OPT always fit: a question is at most 259 octets.
                match self.compose(msg, query, None, plan.rcode, limit, true, buf) {
                    Ok(buf) | Err(buf) => *out = buf,
                }
            }
        }
        outcome
    }

    /// The largest response for this query.
    fn limit(&self, edns: Option<Edns>, transport: Transport) -> usize {
        match transport {
            Transport::Tcp => usize::from(u16::MAX),
            Transport::Udp => match edns {
                Some(e) => usize::from(e.udp_size.clamp(512, self.max_udp_payload)),
                None => 512,
            },
        }
    }

    /// Builds the response into `buf`. `Err` returns the buffer when something did not
    /// fit under `limit`.
    #[allow(clippy::too_many_arguments)]
    fn compose(
        &self,
        msg: &Message<&[u8]>,
        query: &Query<'_>,
        plan: Option<&Plan<'_>>,
        rcode: Rcode,
        limit: usize,
        truncated: bool,
        buf: Vec<u8>,
    ) -> Result<Vec<u8>, Vec<u8>> {
        // Room for the OPT record (11 octets) is kept until the end.
        let opt_room = if query.edns.is_some() { 11 } else { 0 };
        let Ok(mut b) = MessageBuilder::from_target(StaticCompressor::new(buf));
        b.set_push_limit(limit.saturating_sub(opt_room));
        {
            let h = b.header_mut();
            let req = msg.header();
            h.set_id(req.id());
            h.set_qr(true);
            h.set_opcode(req.opcode());
            h.set_rd(req.rd());
            h.set_cd(req.cd());
            h.set_aa(true);
            h.set_ra(self.forward);
            h.set_tc(truncated);
            h.set_rcode(rcode);
        }
        let mut q = b.question();
        if q.push(query.question).is_err() {
            return Err(q.finish().into_target());
        }
        let mut ans = q.answer();
        if let Some(plan) = plan
            && self.push_plan(&mut ans, query, plan).is_err()
        {
            return Err(ans.finish().into_target());
        }
        let mut auth = ans.authority();
        if let Some(zone) = plan.and_then(|p| p.soa) {
            let apex = self.apex_of(zone);
            let pushed = match (Name::from_slice(apex), self.soa_data()) {
                (Ok(owner), Some(soa)) => auth.push((owner, Class::IN, self.ttl, soa)),
                _ => Ok(()),
            };
            if pushed.is_err() {
                return Err(auth.finish().into_target());
            }
        }
        let mut add = auth.additional();
        add.set_push_limit(limit);
        if let Some(edns) = query.edns {
            let size = self.max_udp_payload;
            let pushed = add.opt(|o| {
                o.set_udp_payload_size(size);
                o.set_dnssec_ok(edns.dnssec_ok);
                Ok(())
            });
            if pushed.is_err() {
                return Err(add.finish().into_target());
            }
        }
        Ok(add.finish().into_target())
    }

    /// SOA rdata borrowing the zone's names.
    fn soa_data(&self) -> Option<Soa<&Name<[u8]>>> {
        Some(Soa::new(
            Name::from_slice(&self.ns_name).ok()?,
            Name::from_slice(&self.hostmaster).ok()?,
            Serial(self.serial),
            Ttl::from_secs(SOA_REFRESH),
            Ttl::from_secs(SOA_RETRY),
            Ttl::from_secs(SOA_EXPIRE),
            Ttl::from_secs(self.ttl),
        ))
    }

    fn push_plan(
        &self,
        ans: &mut AnswerBuilder<StaticCompressor<Vec<u8>>>,
        query: &Query<'_>,
        plan: &Plan<'_>,
    ) -> Result<(), PushError> {
        let qname = query.question.qname();
        let qtype = query.question.qtype();
        let ttl = self.ttl;
        for i in 0..plan.chain_len {
            let Ok(target) = Name::from_slice(plan.chain[i]) else {
                return Ok(());
            };
            if i == 0 {
                ans.push((qname, Class::IN, ttl, Cname::new(target)))?;
            } else {
                let Ok(owner) = Name::from_slice(plan.chain[i - 1]) else {
                    return Ok(());
                };
                ans.push((owner, Class::IN, ttl, Cname::new(target)))?;
            }
        }
        match &plan.last {
            Last::None => Ok(()),
            Last::Pod(ip) => {
                if plan.chain_len == 0 {
                    push_pod(ans, qname, qtype, *ip, ttl)
                } else {
                    match Name::from_slice(plan.chain[plan.chain_len - 1]) {
                        Ok(owner) => push_pod(ans, owner, qtype, *ip, ttl),
                        Err(_) => Ok(()),
                    }
                }
            }
            Last::Node(node) => {
                if plan.chain_len == 0 {
                    self.push_node(ans, qname, node, qtype)
                } else {
                    match Name::from_slice(plan.chain[plan.chain_len - 1]) {
                        Ok(owner) => self.push_node(ans, owner, node, qtype),
                        Err(_) => Ok(()),
                    }
                }
            }
        }
    }

    /// Pushes the records of `node` of type `qtype` (every type for ANY).
    fn push_node<N: ToName + Copy>(
        &self,
        ans: &mut AnswerBuilder<StaticCompressor<Vec<u8>>>,
        owner: N,
        node: &Node,
        qtype: Rtype,
    ) -> Result<(), PushError> {
        let ttl = self.ttl;
        let any = qtype == Rtype::ANY;
        if (any || qtype == Rtype::SOA)
            && node.soa.is_some()
            && let Some(soa) = self.soa_data()
        {
            ans.push((owner, Class::IN, ttl, soa))?;
        }
        if any || qtype == Rtype::NS {
            for ns in &node.ns {
                if let Ok(n) = Name::from_slice(ns) {
                    ans.push((owner, Class::IN, ttl, Ns::new(n)))?;
                }
            }
        }
        if (any || qtype == Rtype::CNAME)
            && let Some(c) = &node.cname
            && let Ok(n) = Name::from_slice(c)
        {
            ans.push((owner, Class::IN, ttl, Cname::new(n)))?;
        }
        if any || qtype == Rtype::A {
            for a in &node.a {
                ans.push((owner, Class::IN, ttl, A::new(*a)))?;
            }
        }
        if any || qtype == Rtype::AAAA {
            for a in &node.aaaa {
                ans.push((owner, Class::IN, ttl, Aaaa::new(*a)))?;
            }
        }
        if any || qtype == Rtype::SRV {
            for s in &node.srv {
                if let Ok(n) = Name::from_slice(&s.target) {
                    ans.push((
                        owner,
                        Class::IN,
                        ttl,
                        Srv::new(s.priority, s.weight, s.port, n),
                    ))?;
                }
            }
        }
        if any || qtype == Rtype::PTR {
            for p in &node.ptr {
                if let Ok(n) = Name::from_slice(p) {
                    ans.push((owner, Class::IN, ttl, Ptr::new(n)))?;
                }
            }
        }
        if (any || qtype == Rtype::TXT)
            && let Some(txt) = &node.txt
            && let Ok(t) = Txt::from_octets(txt.as_slice())
        {
            ans.push((owner, Class::IN, VERSION_TTL, t))?;
        }
        Ok(())
    }

    /// Writes an error response: header, the question when it could be read, OPT when
    /// the query had one. Errors are never truncated: they fit in 512 octets.
    fn write_error(
        &self,
        msg: &Message<&[u8]>,
        question: Option<&Question<ParsedName<&[u8]>>>,
        edns: Option<Edns>,
        rcode: OptRcode,
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let buf = std::mem::take(out);
        let Ok(mut b) = MessageBuilder::from_target(StaticCompressor::new(buf));
        b.set_push_limit(self.limit(edns, transport));
        {
            let h = b.header_mut();
            let req = msg.header();
            h.set_id(req.id());
            h.set_qr(true);
            h.set_opcode(req.opcode());
            h.set_rd(req.rd());
            h.set_cd(req.cd());
            h.set_ra(self.forward);
            h.set_rcode(rcode.rcode());
        }
        let mut q = b.question();
        if let Some(question) = question {
            // A question that does not fit is left out rather than failing the error.
            let _ = q.push(question);
        }
        let mut add = q.additional();
        if let Some(e) = edns {
            let size = self.max_udp_payload;
            let _ = add.opt(|o| {
                o.set_udp_payload_size(size);
                o.set_dnssec_ok(e.dnssec_ok);
                o.set_rcode(rcode);
                Ok(())
            });
        }
        *out = add.finish().into_target();
        Outcome {
            action: Action::Reply,
            qtype: question.map(|q| q.qtype().to_int()).unwrap_or(0),
            rcode: ResponseCode::from_opt(rcode),
            truncated: false,
            authoritative: false,
            chase_upstream: false,
        }
    }
}

/// Number of records of `qtype` at a node (ANY: any record at all).
fn count(node: &Node, qtype: Rtype) -> usize {
    let soa = usize::from(node.soa.is_some());
    let cname = usize::from(node.cname.is_some());
    let txt = usize::from(node.txt.is_some());
    match qtype {
        Rtype::A => node.a.len(),
        Rtype::AAAA => node.aaaa.len(),
        Rtype::SRV => node.srv.len(),
        Rtype::PTR => node.ptr.len(),
        Rtype::CNAME => cname,
        Rtype::TXT => txt,
        Rtype::NS => node.ns.len(),
        Rtype::SOA => soa,
        Rtype::ANY => {
            node.a.len()
                + node.aaaa.len()
                + node.srv.len()
                + node.ptr.len()
                + node.ns.len()
                + cname
                + txt
                + soa
        }
        _ => 0,
    }
}

fn push_pod<N: ToName>(
    ans: &mut AnswerBuilder<StaticCompressor<Vec<u8>>>,
    owner: N,
    qtype: Rtype,
    ip: IpAddr,
    ttl: u32,
) -> Result<(), PushError> {
    match ip {
        IpAddr::V4(v4) if qtype == Rtype::A || qtype == Rtype::ANY => {
            ans.push((owner, Class::IN, ttl, A::new(v4)))
        }
        IpAddr::V6(v6) if qtype == Rtype::AAAA || qtype == Rtype::ANY => {
            ans.push((owner, Class::IN, ttl, Aaaa::new(v6)))
        }
        _ => Ok(()),
    }
}

/// Checks a query: one question, every section parses, at most one OPT, at the root.
/// The error carries the response code and the EDNS part when it could be read.
fn parse_query<'a>(msg: &Message<&'a [u8]>) -> Result<Query<'a>, (OptRcode, Option<Edns>)> {
    let formerr = (OptRcode::FORMERR, None);
    if msg.header_counts().qdcount() != 1 {
        return Err(formerr);
    }
    let question = msg.sole_question().map_err(|_| formerr)?;
    let (_, answer, authority, additional) = msg.sections().map_err(|_| formerr)?;
    for rec in answer {
        rec.map_err(|_| formerr)?;
    }
    for rec in authority {
        rec.map_err(|_| formerr)?;
    }
    let mut edns = None;
    let mut opts = 0;
    for rec in additional {
        let rec = rec.map_err(|_| formerr)?;
        if rec.rtype() != Rtype::OPT {
            continue;
        }
        opts += 1;
        if opts > 1 || !rec.owner().is_root() {
            return Err(formerr);
        }
        let opt = match rec.to_record::<Opt<&'a [u8]>>() {
            Ok(Some(r)) => OptRecord::from_record(r),
            _ => return Err(formerr),
        };
        edns = Some(Edns {
            udp_size: opt.udp_payload_size(),
            version: opt.version(),
            dnssec_ok: opt.dnssec_ok(),
        });
    }
    Ok(Query { question, edns })
}
