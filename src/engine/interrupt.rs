//! Ctrl-C and SIGTERM as apply sees them: a flag that stops apply waiting on, and starting,
//! stacks, never a stack CloudFormation is already changing.

use tokio::sync::watch;

/// Whether the user asked apply to stop. Cheap to clone; every clone sees the same flag.
#[derive(Clone)]
pub struct Interrupt(watch::Receiver<bool>);

/// Raises the [`Interrupt`] it was made with.
pub struct InterruptSender(watch::Sender<bool>);

impl InterruptSender {
    pub fn raise(&self) {
        self.0.send_replace(true);
    }
}

impl Interrupt {
    pub fn channel() -> (InterruptSender, Interrupt) {
        let (sender, receiver) = watch::channel(false);
        (InterruptSender(sender), Interrupt(receiver))
    }

    /// Whether it has fired; asked before each step that would change AWS.
    pub fn fired(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once it has fired (at once if it already has); may be awaited again.
    pub async fn wait(&self) {
        let mut receiver = self.0.clone();
        if receiver.wait_for(|fired| *fired).await.is_err() {
            // The sender is gone without firing: nothing can interrupt any more.
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_once_raised_and_stays_fired_for_every_wait() {
        let (sender, interrupt) = Interrupt::channel();
        assert!(!interrupt.fired());
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), interrupt.wait());
        assert!(waiting.await.is_err(), "it waits until raised");
        sender.raise();
        assert!(interrupt.fired());
        interrupt.wait().await;
        interrupt.clone().wait().await;
        // Its sender gone unraised, nothing can fire it any more.
        let never = Interrupt::channel().1;
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), never.wait());
        assert!(waiting.await.is_err() && !never.fired());
    }
}
