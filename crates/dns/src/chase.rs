//! Following an ExternalName's CNAME out of the cluster zone: the query for the target,
//! and the response that appends the target's records to svcnet's CNAME. If the chase
//! fails the CNAME alone is answered (CoreDNS drops it; RFC 1034 3.6.2 keeps it).

use domain::base::ToName;
use domain::base::iana::{Class, Rcode, Rtype};
use domain::base::message_builder::StaticCompressor;
use domain::base::name::ParsedName;
use domain::base::{Message, MessageBuilder, ParsedRecord};
use domain::rdata::{AllRecordData, Cname};

type Data<'a> = AllRecordData<&'a [u8], ParsedName<&'a [u8]>>;

/// The query for the target of the last CNAME in `response` (svcnet's answer), with the
/// original type, recursion desired, EDNS with `udp_size`.
pub(crate) fn target_query(response: &[u8], udp_size: u16) -> Option<Vec<u8>> {
    let msg = Message::from_octets(response).ok()?;
    let qtype = msg.sole_question().ok()?.qtype();
    let mut target = None;
    for rec in msg.answer().ok()?.limit_to::<Cname<ParsedName<&[u8]>>>() {
        target = Some(rec.ok()?.data().cname().to_name::<Vec<u8>>());
    }
    let target = target?;
    let mut b = MessageBuilder::new_vec();
    b.header_mut().set_id(msg.header().id());
    b.header_mut().set_rd(true);
    let mut q = b.question();
    q.push((target, qtype, Class::IN)).ok()?;
    let mut add = q.additional();
    add.opt(|o| {
        o.set_udp_payload_size(udp_size);
        Ok(())
    })
    .ok()?;
    Some(add.finish())
}

fn copy<'a>(
    rec: ParsedRecord<'a, &'a [u8]>,
) -> Option<domain::base::Record<ParsedName<&'a [u8]>, Data<'a>>> {
    rec.to_record::<Data<'_>>().ok().flatten()
}

/// svcnet's CNAME answer with the upstream's answer records appended (and, for a denial,
/// its authority section and response code, RFC 6604). `None` when the upstream answer
/// is not usable (then the CNAME alone is sent). When the result exceeds `limit` the
/// header and question come back with TC set.
pub(crate) fn append(ours: &[u8], upstream: &[u8], limit: usize) -> Option<Vec<u8>> {
    let ours = Message::from_octets(ours).ok()?;
    let up = Message::from_octets(upstream).ok()?;
    let up_rcode = up.header().rcode();
    if up_rcode != Rcode::NOERROR && up_rcode != Rcode::NXDOMAIN {
        return None;
    }
    let built = build(&ours, &up, up_rcode, limit, false);
    match built {
        Some(b) => Some(b),
        None => build(&ours, &up, up_rcode, limit, true),
    }
}

fn build(
    ours: &Message<&[u8]>,
    up: &Message<&[u8]>,
    rcode: Rcode,
    limit: usize,
    truncated: bool,
) -> Option<Vec<u8>> {
    let opt = ours.opt();
    let opt_room = if opt.is_some() { 11 } else { 0 };
    let Ok(mut b) = MessageBuilder::from_target(StaticCompressor::new(Vec::with_capacity(512)));
    b.set_push_limit(limit.saturating_sub(opt_room));
    *b.header_mut() = ours.header();
    b.header_mut().set_rcode(rcode);
    b.header_mut().set_tc(truncated);
    // The answer is partly from outside svcnet's zones.
    b.header_mut().set_aa(false);
    let mut q = b.question();
    for question in ours.question() {
        q.push(question.ok()?).ok()?;
    }
    let mut a = q.answer();
    if !truncated {
        for rec in ours.answer().ok()? {
            a.push(copy(rec.ok()?)?).ok()?;
        }
        for rec in up.answer().ok()? {
            a.push(copy(rec.ok()?)?).ok()?;
        }
    }
    let mut auth = a.authority();
    if !truncated && (rcode == Rcode::NXDOMAIN || up.header_counts().ancount() == 0) {
        for rec in up.authority().ok()? {
            let rec = rec.ok()?;
            if rec.rtype() == Rtype::SOA {
                auth.push(copy(rec)?).ok()?;
            }
        }
    }
    let mut add = auth.additional();
    add.set_push_limit(limit);
    if let Some(opt) = opt {
        let size = opt.udp_payload_size();
        let dnssec_ok = opt.dnssec_ok();
        add.opt(|o| {
            o.set_udp_payload_size(size);
            o.set_dnssec_ok(dnssec_ok);
            Ok(())
        })
        .ok()?;
    }
    Some(add.finish().into_target())
}
