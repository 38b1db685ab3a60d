//! The WDT of the engine tests (`schedule`, `pipelining`): it answers from a script,
//! optionally after a delay, and records every call, so that a test can check what was
//! pushed, when, and how calls overlapped.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use wdtpipe_deliver::wdt::{BoxFuture, Call, Reply, WdtApi};
use wdtpipe_proto::v1::TradeOrder;

/// One call the scripted WDT took.
#[derive(Debug, Clone)]
pub(crate) struct Pushed {
    /// When the call came, on tokio's clock (which a test may pause).
    pub(crate) at: Instant,
    pub(crate) lane: String,
    pub(crate) trades: Vec<TradeOrder>,
    /// What the call was answered.
    pub(crate) reply: Reply,
    /// The calls in flight when it came, itself included.
    pub(crate) in_flight: usize,
    /// Its tids that another call in flight held when it came.
    pub(crate) overlapping: Vec<String>,
}

impl Pushed {
    /// The first tid of the call (empty for a call without trades).
    pub(crate) fn head(&self) -> &str {
        self.trades.first().map_or("", |t| t.tid.as_str())
    }
}

/// A WDT that answers each call with the next reply of its script (the last reply
/// repeats), after `delay`, and remembers every call.
#[derive(Debug)]
pub(crate) struct ScriptedWdt {
    delay: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    script: VecDeque<Reply>,
    calls: Vec<Pushed>,
    /// Calls in flight now, and the tids they hold.
    in_flight: usize,
    in_call: HashSet<String>,
}

impl ScriptedWdt {
    /// A WDT that answers at once.
    pub(crate) fn new(script: Vec<Reply>) -> Arc<Self> {
        Self::slow(Duration::ZERO, script)
    }

    /// A WDT that takes `delay` to answer each call.
    pub(crate) fn slow(delay: Duration, script: Vec<Reply>) -> Arc<Self> {
        Arc::new(Self {
            delay,
            state: Mutex::new(State {
                script: script.into(),
                ..State::default()
            }),
        })
    }

    /// Answers the calls from now on from `script` instead.
    pub(crate) fn answer_from(&self, script: Vec<Reply>) {
        self.state.lock().unwrap().script = script.into();
    }

    /// Every call so far, oldest first.
    pub(crate) fn calls(&self) -> Vec<Pushed> {
        self.state.lock().unwrap().calls.clone()
    }

    /// When each call came, oldest first.
    pub(crate) fn times(&self) -> Vec<Instant> {
        self.calls().iter().map(|call| call.at).collect()
    }
}

impl WdtApi for ScriptedWdt {
    fn trade_push<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Reply> {
        let tids: Vec<String> = call.trades.iter().map(|t| t.tid.clone()).collect();
        let reply = {
            let mut state = self.state.lock().unwrap();
            let reply = if state.script.len() > 1 {
                state.script.pop_front()
            } else {
                state.script.front().cloned()
            }
            .expect("the script has a reply");
            state.in_flight += 1;
            let overlapping = tids
                .iter()
                .filter(|tid| !state.in_call.insert((*tid).clone()))
                .cloned()
                .collect();
            let pushed = Pushed {
                at: Instant::now(),
                lane: call.lane.to_owned(),
                trades: call.trades.iter().map(|t| (*t).clone()).collect(),
                reply: reply.clone(),
                in_flight: state.in_flight,
                overlapping,
            };
            state.calls.push(pushed);
            reply
        };
        Box::pin(async move {
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            let mut state = self.state.lock().unwrap();
            state.in_flight -= 1;
            for tid in &tids {
                state.in_call.remove(tid);
            }
            reply
        })
    }

    fn endpoint(&self) -> &str {
        "scripted"
    }
}
