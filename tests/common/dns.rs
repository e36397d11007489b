//! A tiny DNS server for tests: answers A queries for the names it is
//! given, so real nginx (whose `resolver` speaks DNS, not /etc/hosts) can
//! find "Docker services" that are really processes on loopback addresses.

use std::collections::HashMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::{Arc, Mutex};

pub struct Dns {
    pub port: u16,
    names: Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>>,
}

impl Dns {
    pub fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let names = Arc::new(Mutex::new(HashMap::new()));
        let table = names.clone();
        // The thread ends with the test process; it only ever answers.
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                if let Some(reply) = answer(&buf[..n], &table.lock().unwrap()) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        Self { port, names }
    }

    pub fn set(&self, name: &str, addrs: &[Ipv4Addr]) {
        self.names
            .lock()
            .unwrap()
            .insert(name.to_owned(), addrs.to_vec());
    }
}

fn answer(query: &[u8], names: &HashMap<String, Vec<Ipv4Addr>>) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // Question: labels up to the zero byte, then type and class.
    let mut i = 12;
    let mut labels = Vec::new();
    while *query.get(i)? != 0 {
        let len = query[i] as usize;
        labels.push(String::from_utf8_lossy(query.get(i + 1..i + 1 + len)?).to_lowercase());
        i += 1 + len;
    }
    let question_end = i + 5;
    let qtype = u16::from_be_bytes([*query.get(i + 1)?, *query.get(i + 2)?]);
    let name = labels.join(".");
    let addrs = names.get(&name);
    let answers: &[Ipv4Addr] = match (addrs, qtype) {
        (Some(addrs), 1) => addrs,
        _ => &[],
    };
    let mut reply = Vec::with_capacity(question_end + answers.len() * 16);
    reply.extend_from_slice(&query[..2]); // id
    let rcode = if addrs.is_some() { 0 } else { 3 }; // NXDOMAIN for unknown names
    reply.extend_from_slice(&[0x81, 0x80 | rcode]); // response, recursion desired and available
    reply.extend_from_slice(&[0, 1]); // one question
    reply.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]); // no authority or additional records
    reply.extend_from_slice(query.get(12..question_end)?);
    for addr in answers {
        reply.extend_from_slice(&[0xc0, 0x0c]); // the name in the question
        reply.extend_from_slice(&[0, 1, 0, 1]); // A, IN
        reply.extend_from_slice(&1u32.to_be_bytes()); // TTL: 1 s
        reply.extend_from_slice(&[0, 4]);
        reply.extend_from_slice(&addr.octets());
    }
    Some(reply)
}
