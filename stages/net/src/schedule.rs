//! Learning-rate schedules (§7.1, §7.5): v2's PolyLR and the original paper's
//! ReduceLROnPlateau on the train-loss moving average, with its patience-based stop.

use serde::{Deserialize, Serialize};

/// §7.1 PolyLR, stepped at each epoch start: `initial · (1 − epoch / max_epochs)^0.9`.
pub fn poly_lr(initial: f64, epoch: usize, max_epochs: usize, exponent: f64) -> f64 {
    let f = 1.0 - epoch as f64 / max_epochs.max(1) as f64;
    initial * f.max(0.0).powf(exponent)
}

/// §7.5 (nnU-Net v1 `network_trainer`): ReduceLROnPlateau(min, factor 0.2, patience 30,
/// threshold 1e-3 abs) on the train-loss EMA (α 0.93); training stops when the EMA has not
/// improved by more than 5e-4 for 50 epochs and the lr is below 1e-6 (otherwise the patience
/// window is reset to half).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlateauSchedule {
    pub lr: f64,
    pub factor: f64,
    pub patience: usize,
    pub threshold: f64,
    pub ema_alpha: f64,
    pub stop_patience: usize,
    pub stop_eps: f64,
    pub lr_threshold: f64,
    /// Train-loss moving average.
    pub ema: Option<f64>,
    /// ReduceLROnPlateau state.
    pub best: Option<f64>,
    pub bad_epochs: usize,
    /// Patience (stop) state.
    pub best_for_patience: Option<f64>,
    pub best_epoch: Option<usize>,
}

impl PlateauSchedule {
    pub fn new(lr: f64) -> Self {
        PlateauSchedule {
            lr,
            factor: 0.2,
            patience: 30,
            threshold: 1e-3,
            ema_alpha: 0.93,
            stop_patience: 50,
            stop_eps: 5e-4,
            lr_threshold: 1e-6,
            ema: None,
            best: None,
            bad_epochs: 0,
            best_for_patience: None,
            best_epoch: None,
        }
    }

    /// Feeds the epoch's mean train loss; updates the lr; returns whether to continue.
    pub fn end_epoch(&mut self, epoch: usize, train_loss: f64) -> bool {
        let ma = match self.ema {
            None => train_loss,
            Some(m) => self.ema_alpha * m + (1.0 - self.ema_alpha) * train_loss,
        };
        self.ema = Some(ma);
        // torch ReduceLROnPlateau(mode='min', threshold_mode='abs').
        match self.best {
            Some(b) if ma >= b - self.threshold => self.bad_epochs += 1,
            _ => {
                self.best = Some(ma);
                self.bad_epochs = 0;
            }
        }
        if self.bad_epochs > self.patience {
            self.lr *= self.factor;
            self.bad_epochs = 0;
        }
        // v1 manage_patience.
        let best = *self.best_for_patience.get_or_insert(ma);
        let best_epoch = *self.best_epoch.get_or_insert(epoch);
        if ma + self.stop_eps < best {
            self.best_for_patience = Some(ma);
            self.best_epoch = Some(epoch);
        } else if epoch.saturating_sub(best_epoch) > self.stop_patience {
            if self.lr > self.lr_threshold {
                self.best_epoch = Some(epoch - self.stop_patience / 2);
            } else {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poly_values() {
        assert_eq!(poly_lr(1e-2, 0, 1000, 0.9), 1e-2);
        // §7.1: at epoch 999 lr ≈ 2.0e-5.
        let last = poly_lr(1e-2, 999, 1000, 0.9);
        assert!((last - 1e-2 * 0.001f64.powf(0.9)).abs() < 1e-12 && (last - 2.0e-5).abs() < 1e-6);
        assert!((poly_lr(1.0, 500, 1000, 0.9) - 0.5f64.powf(0.9)).abs() < 1e-12);
    }

    #[test]
    fn plateau_reduces_and_stops() {
        let mut s = PlateauSchedule::new(3e-4);
        // Improving loss: no reduction.
        for e in 0..20 {
            assert!(s.end_epoch(e, 1.0 - e as f64 * 0.05));
        }
        assert_eq!(s.lr, 3e-4);
        // Flat loss: after 31 bad epochs the lr drops by 0.2.
        let mut e = 20;
        while s.lr == 3e-4 {
            assert!(s.end_epoch(e, 0.0));
            e += 1;
        }
        assert!((s.lr - 6e-5).abs() < 1e-15);
        // Eventually lr < 1e-6 and training stops.
        let mut stopped = false;
        for _ in 0..2000 {
            e += 1;
            if !s.end_epoch(e, 0.0) {
                stopped = true;
                break;
            }
        }
        assert!(stopped && s.lr < 1e-6);
    }
}
