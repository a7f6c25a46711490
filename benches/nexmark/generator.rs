//! The Nexmark event generator: an online auction's people, auctions and bids.
//!
//! Events are numbered from 0; event `n`'s kind follows from `n % 50`: 1 person, then
//! 3 auctions, then 46 bids. Ids follow from the numbering too, so an auction's
//! seller and a bid's auction and bidder always exist (or are about to: a small lead
//! lets ids run a few ahead, as in the benchmark's definition):
//!
//! - a person is person `1000 + k` for the `k`-th person event;
//! - an auction is auction `1000 + k` for the `k`-th auction event, with a seller
//!   among the active people (the last 1,000) or, 3 times in 4, a "hot" seller (a
//!   multiple of 100 among the people so far), and a category among 5;
//! - a bid goes, 1 time in 2, to a hot auction (a multiple of 100 among the auctions
//!   so far), else to one of the 100 auctions in flight; its bidder is, 3 times in
//!   4, a hot bidder, else an active person.
//!
//! Prices are `round(10^(6u) * 100)` cents for a uniform `u`, so they spread over six
//! orders of magnitude. Event time advances by `1e6 / rate` µs per event from a fixed
//! base; with `disorder` set, each event's time moves back by a uniform amount up to
//! it. Everything comes from one seeded generator: a seed gives the same events.

use allsource::engine::{AppendRequest, EventData, EventStore, ExpectedVersion};

/// The generator's parameters.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Events per second of event time.
    pub rate: u64,
    /// Each event's time moves back by up to this much (µs); 0 keeps them in order.
    pub disorder_micros: i64,
    /// The seed.
    pub seed: u64,
}

/// Where event time starts: 2024-01-01T00:00:00Z.
pub const BASE_MICROS: i64 = 1_704_067_200_000_000;

const PERSONS: u64 = 1;
const AUCTIONS: u64 = 3;
const BIDS: u64 = 46;
const CYCLE: u64 = PERSONS + AUCTIONS + BIDS;

const FIRST_PERSON: u64 = 1000;
const FIRST_AUCTION: u64 = 1000;
const FIRST_CATEGORY: u64 = 10;
const CATEGORIES: u64 = 5;
const ACTIVE_PEOPLE: u64 = 1000;
const IN_FLIGHT_AUCTIONS: u64 = 100;
/// How far past the newest id a chosen id may run.
const ID_LEAD: u64 = 10;
/// Hot ids are the multiples of this.
const HOT_STRIDE: u64 = 100;
/// 1 in `ratio` choices is not hot.
const HOT_AUCTION_RATIO: u64 = 2;
const HOT_SELLER_RATIO: u64 = 4;
const HOT_BIDDER_RATIO: u64 = 4;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];

const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];

/// A person who sells or bids.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub credit_card: String,
    pub city: String,
    pub state: String,
}

/// An item put up for auction.
#[derive(Debug, Clone, PartialEq)]
pub struct Auction {
    pub id: u64,
    pub item_name: String,
    pub description: String,
    pub initial_bid: u64,
    pub reserve: u64,
    /// When it closes, µs since the epoch.
    pub expires: i64,
    pub seller: u64,
    pub category: u64,
}

/// A bid on an auction.
#[derive(Debug, Clone, PartialEq)]
pub struct Bid {
    pub auction: u64,
    pub bidder: u64,
    pub price: u64,
    pub channel: String,
    pub url: String,
}

/// One generated event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Person(Person),
    Auction(Auction),
    Bid(Bid),
}

/// An event with its number and event time.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Its number, from 0.
    pub number: u64,
    /// Its event time, µs since the epoch.
    pub time_micros: i64,
    pub event: Event,
}

impl Generated {
    /// The event as the store keeps it: its type, its stream and its payload.
    /// Streams are `person-<id>`, `auction-<id>`, and for bids `bidder-<id>` (a
    /// bidder's bids are one stream, so sessions per bidder are sessions per stream).
    pub fn to_event(&self) -> (&'static str, String, serde_json::Value) {
        use serde_json::json;
        let time = self.time_micros;
        match &self.event {
            Event::Person(p) => (
                "person",
                format!("person-{}", p.id),
                json!({"id": p.id, "name": p.name, "email": p.email,
                       "credit_card": p.credit_card, "city": p.city, "state": p.state,
                       "date_time": time}),
            ),
            Event::Auction(a) => (
                "auction",
                format!("auction-{}", a.id),
                json!({"id": a.id, "item_name": a.item_name, "description": a.description,
                       "initial_bid": a.initial_bid, "reserve": a.reserve,
                       "date_time": time, "expires": a.expires, "seller": a.seller,
                       "category": a.category}),
            ),
            Event::Bid(b) => (
                "bid",
                format!("bidder-{}", b.bidder),
                json!({"auction": b.auction, "bidder": b.bidder, "price": b.price,
                       "channel": b.channel, "url": b.url, "date_time": time}),
            ),
        }
    }
}

/// SplitMix64: small, fast and fully determined by its seed.
#[derive(Debug, Clone)]
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound` > 0).
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(bound)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }

    /// Lowercase letters, `len` of them.
    fn word(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b'a' + self.below(26) as u8))
            .collect()
    }
}

/// The generator: an endless iterator of events, the same for the same config.
#[derive(Debug, Clone)]
pub struct Generator {
    config: Config,
    random: Random,
    next: u64,
}

impl Generator {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            random: Random(config.seed),
            next: 0,
        }
    }

    fn delay_micros(&self) -> i64 {
        (1_000_000 / self.config.rate.max(1)) as i64
    }

    fn person(&mut self, number: u64) -> Person {
        let r = &mut self.random;
        let name = format!("{} {}", r.pick(&FIRST_NAMES), r.pick(&LAST_NAMES));
        let email = format!("{}@{}.com", r.word(7), r.word(5));
        let credit_card = (0..4)
            .map(|_| format!("{:04}", r.below(10_000)))
            .collect::<Vec<_>>()
            .join(" ");
        Person {
            id: FIRST_PERSON + last_person(number),
            name,
            email,
            credit_card,
            city: r.pick(&CITIES).to_string(),
            state: r.pick(&STATES).to_string(),
        }
    }

    fn auction(&mut self, number: u64, time: i64) -> Auction {
        let seller = if self.random.below(HOT_SELLER_RATIO) > 0 {
            last_person(number) / HOT_STRIDE * HOT_STRIDE
        } else {
            self.some_person(number)
        };
        let initial_bid = self.price();
        let reserve = initial_bid + self.price();
        // Auctions close after about as long as it takes for the next
        // `IN_FLIGHT_AUCTIONS` auctions to open, so that many are open at a time.
        let opening_every = self.delay_micros() * (CYCLE / AUCTIONS) as i64;
        let length = opening_every * IN_FLIGHT_AUCTIONS as i64;
        let expires = time + length / 2 + self.random.below(length.max(1) as u64) as i64;
        let r = &mut self.random;
        Auction {
            id: FIRST_AUCTION + last_auction(number),
            item_name: r.word(12),
            description: r.word(30),
            initial_bid,
            reserve,
            expires,
            seller: FIRST_PERSON + seller,
            category: FIRST_CATEGORY + r.below(CATEGORIES),
        }
    }

    fn bid(&mut self, number: u64) -> Bid {
        let auction = if self.random.below(HOT_AUCTION_RATIO) > 0 {
            last_auction(number) / HOT_STRIDE * HOT_STRIDE
        } else {
            let newest = last_auction(number);
            let oldest = newest.saturating_sub(IN_FLIGHT_AUCTIONS);
            oldest + self.random.below(newest - oldest + 1 + ID_LEAD)
        };
        let bidder = if self.random.below(HOT_BIDDER_RATIO) > 0 {
            last_person(number) / HOT_STRIDE * HOT_STRIDE + 1
        } else {
            self.some_person(number)
        };
        let price = self.price();
        let r = &mut self.random;
        let channel = if r.below(HOT_STRIDE) > 0 {
            r.pick(&HOT_CHANNELS).to_string()
        } else {
            format!("channel-{}", r.below(10_000))
        };
        let url = format!(
            "https://www.nexmark.com/{}/{}/{}/item.htm?query=1",
            r.word(5),
            r.word(5),
            r.word(5)
        );
        Bid {
            auction: FIRST_AUCTION + auction,
            bidder: FIRST_PERSON + bidder,
            price,
            channel,
            url,
        }
    }

    /// One of the active people, or a few ahead of the newest.
    fn some_person(&mut self, number: u64) -> u64 {
        let people = last_person(number) + 1;
        let active = people.min(ACTIVE_PEOPLE);
        people - active + self.random.below(active + ID_LEAD)
    }

    fn price(&mut self) -> u64 {
        (10f64.powf(self.random.unit() * 6.0) * 100.0).round() as u64
    }
}

/// The 0-based number of the newest person at event `number`.
fn last_person(number: u64) -> u64 {
    let (cycle, offset) = (number / CYCLE, number % CYCLE);
    cycle * PERSONS
        + if offset < PERSONS {
            offset
        } else {
            PERSONS - 1
        }
}

/// The 0-based number of the newest auction at event `number` (of the previous
/// cycle's last when `number` is a person).
fn last_auction(number: u64) -> u64 {
    let (cycle, offset) = (number / CYCLE, number % CYCLE);
    if offset < PERSONS {
        (cycle * AUCTIONS).saturating_sub(1)
    } else if offset >= PERSONS + AUCTIONS {
        cycle * AUCTIONS + AUCTIONS - 1
    } else {
        cycle * AUCTIONS + offset - PERSONS
    }
}

impl Iterator for Generator {
    type Item = Generated;

    fn next(&mut self) -> Option<Generated> {
        let number = self.next;
        self.next += 1;
        let mut time = BASE_MICROS + number as i64 * self.delay_micros();
        if self.config.disorder_micros > 0 {
            time -= self.random.below(self.config.disorder_micros as u64 + 1) as i64;
        }
        let offset = number % CYCLE;
        let event = if offset < PERSONS {
            Event::Person(self.person(number))
        } else if offset < PERSONS + AUCTIONS {
            Event::Auction(self.auction(number, time))
        } else {
            Event::Bid(self.bid(number))
        };
        Some(Generated {
            number,
            time_micros: time,
            event,
        })
    }
}

/// Check the generated events against the definition: the mix of kinds, ids that
/// exist (or are within the lead), categories, prices, event time, and that a seed
/// gives the same events again. Panics with what is wrong.
pub fn check_definition() {
    {
        let config = Config {
            rate: 10_000,
            disorder_micros: 0,
            seed: 7,
        };
        let events: Vec<Generated> = Generator::new(config).take(5_000).collect();
        let count = |f: fn(&Event) -> bool| events.iter().filter(|e| f(&e.event)).count();
        assert_eq!(count(|e| matches!(e, Event::Person(_))), 100);
        assert_eq!(count(|e| matches!(e, Event::Auction(_))), 300);
        assert_eq!(count(|e| matches!(e, Event::Bid(_))), 4_600);
        assert!(
            events
                .windows(2)
                .all(|w| w[1].time_micros - w[0].time_micros == 100)
        );
        let mut people = 0;
        let mut auctions = 0;
        for e in &events {
            match &e.event {
                Event::Person(p) => {
                    assert_eq!(p.id, FIRST_PERSON + people);
                    people += 1;
                }
                Event::Auction(a) => {
                    assert_eq!(a.id, FIRST_AUCTION + auctions);
                    auctions += 1;
                    assert!(a.seller < FIRST_PERSON + people + ID_LEAD);
                    assert!((FIRST_CATEGORY..FIRST_CATEGORY + CATEGORIES).contains(&a.category));
                    assert!(a.reserve >= a.initial_bid && a.expires > e.time_micros);
                }
                Event::Bid(b) => {
                    assert!(b.auction < FIRST_AUCTION + auctions + ID_LEAD);
                    assert!(b.bidder < FIRST_PERSON + people + ID_LEAD);
                    assert!((1..=100_000_000).contains(&b.price));
                }
            }
        }
        // Seeded: the same events again.
        let again: Vec<Generated> = Generator::new(config).take(5_000).collect();
        assert_eq!(events, again);
    }
}

/// Append `events` to `store` under `tenant`, a request per 1,000 events.
pub async fn append(store: &EventStore, tenant: &str, events: &[Generated]) {
    for chunk in events.chunks(1_000) {
        let mut request = AppendRequest::new(tenant);
        for g in chunk {
            let (kind, entity, payload) = g.to_event();
            let event =
                EventData::new(kind, payload.to_string()).with_timestamp_micros(g.time_micros);
            request = request.stream(entity, ExpectedVersion::Any, vec![event]);
        }
        store
            .append(request)
            .await
            .unwrap_or_else(|e| panic!("appending: {e}"));
    }
}
