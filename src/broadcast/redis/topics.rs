//! How many local subscribers each topic has: SUBSCRIBE goes out for the
//! first, UNSUBSCRIBE for the last, and the joins and leaves in between
//! only touch a map under a plain mutex.
//!
//! Every join used to take one async lock, which a topic's first join
//! held across its SUBSCRIBE round trip, and whose every handoff waited
//! for the next joiner's turn on the runtime. In a burst of 10,000 joins
//! of one room all 10,000 were at that lock at once (docs/BENCHMARKS.md).
//! The async lock is now taken only to change a subscription in Redis.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
pub(super) struct Topics {
    /// Topics subscribed in Redis, each with its count (at least 1).
    counts: Mutex<HashMap<String, usize>>,
    /// Held across each SUBSCRIBE and UNSUBSCRIBE, so that Redis gets
    /// those of a topic in the order its count crossed zero.
    changing: tokio::sync::Mutex<()>,
}

impl Topics {
    fn counts(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.counts.lock().expect("topic counts lock poisoned")
    }

    /// Counts one more subscriber if the topic is subscribed already.
    fn joined(&self, topic: &str) -> bool {
        match self.counts().get_mut(topic) {
            Some(count) => {
                *count += 1;
                true
            }
            None => false,
        }
    }

    /// Counts one subscriber less unless it is the last; `None`: the topic
    /// was not subscribed.
    fn left(&self, topic: &str, last_too: bool) -> Option<bool> {
        let mut counts = self.counts();
        let count = counts.get_mut(topic)?;
        if *count > 1 {
            *count -= 1;
            return Some(false);
        }
        if last_too {
            counts.remove(topic);
        }
        Some(true)
    }

    /// Counts a subscriber, running `subscribe` first when it is the
    /// topic's first. On error nothing is counted. The Redis call is boxed
    /// apart: a join that only counts carries no room for it.
    pub async fn subscribe<E, F: Future<Output = Result<(), E>>>(
        &self,
        topic: &str,
        subscribe: impl FnOnce() -> F,
    ) -> Result<(), E> {
        if self.joined(topic) {
            return Ok(());
        }
        let _changing = self.changing.lock().await;
        if self.joined(topic) {
            return Ok(());
        }
        Box::pin(subscribe()).await?;
        self.counts().insert(topic.to_owned(), 1);
        Ok(())
    }

    /// Undoes one [`Topics::subscribe`], running `unsubscribe` when it was
    /// the topic's last.
    pub async fn unsubscribe<F: Future<Output = ()>>(
        &self,
        topic: &str,
        unsubscribe: impl FnOnce() -> F,
    ) {
        if self.left(topic, false) != Some(true) {
            return;
        }
        let _changing = self.changing.lock().await;
        // Removed under `changing`: a join from now on waits for it, and
        // subscribes again once the UNSUBSCRIBE is done.
        if self.left(topic, true) == Some(true) {
            Box::pin(unsubscribe()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn redis_hears_of_the_first_join_and_the_last_leave_only() {
        let topics = Topics::default();
        let calls = AtomicUsize::new(0);
        let call = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<(), ()>(())
        };
        let undo = || async {
            let _ = call().await;
        };
        topics.subscribe("t", call).await.unwrap();
        topics.subscribe("t", call).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        topics.unsubscribe("t", undo).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        topics.unsubscribe("t", undo).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Not subscribed: nothing to undo.
        topics.unsubscribe("t", undo).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        topics.subscribe("t", call).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_failed_subscribe_counts_nothing() {
        let topics = Topics::default();
        let failed = topics.subscribe("t", || async { Err("down") }).await;
        assert_eq!(failed, Err("down"));
        let ran = AtomicUsize::new(0);
        let subscribe = || async {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok::<(), &str>(())
        };
        topics.subscribe("t", subscribe).await.unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_join_during_the_last_leave_subscribes_after_its_unsubscribe() {
        let topics = Topics::default();
        let said = std::sync::Mutex::new(Vec::new());
        let say = |what| said.lock().unwrap().push(what);
        let subscribe = || async {
            say("SUBSCRIBE");
            Ok::<(), ()>(())
        };
        topics.subscribe("t", subscribe).await.unwrap();
        let (answer, answered) = tokio::sync::oneshot::channel::<()>();
        let unsubscribe = || async {
            let _ = answered.await;
            say("UNSUBSCRIBE");
        };
        // Polled in order: the leave waits for its answer, the join finds
        // the topic gone and waits for the leave, then the answer comes.
        let (_, joined, _) = tokio::join!(
            topics.unsubscribe("t", unsubscribe),
            topics.subscribe("t", subscribe),
            async { answer.send(()).unwrap() },
        );
        joined.unwrap();
        let said = said.lock().unwrap().clone();
        assert_eq!(said, ["SUBSCRIBE", "UNSUBSCRIBE", "SUBSCRIBE"]);
    }
}
