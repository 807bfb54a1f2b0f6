#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <vector>

namespace mnemo::runtime {

/// How a supervisor (or the entity registry) restarts a failed actor:
/// exponential backoff with jitter, bounded by a restart intensity.
struct restart_policy {
  /// Restart intensity: more than `max_restarts` failures within `within`
  /// escalate (a supervisor fails itself; the registry stops restarting the
  /// entity for the rest of the window). Default: 10.
  size_t max_restarts = 10;
  /// The sliding window of the restart intensity. Default: 60 s.
  std::chrono::milliseconds within = std::chrono::seconds{60};
  /// Delay before the first restart of a failed actor. Default: 100 ms.
  std::chrono::milliseconds min_backoff = std::chrono::milliseconds{100};
  /// Upper bound of the doubling delay (before jitter). Default: 10 s.
  std::chrono::milliseconds max_backoff = std::chrono::seconds{10};
  /// Each delay is multiplied by a random factor in [1, 1 + jitter], so
  /// that actors failing together do not restart together. Default: 0.2.
  double jitter = 0.2;
};

/// Counts the failures of one actor (or of all children of a supervisor)
/// in the sliding window of a `restart_policy` and computes backoff delays.
/// Not thread-safe; lives inside one actor.
class restart_tracker {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  /// Records a failure at `now`. Returns the delay before the restart:
  /// `min_backoff * 2^(k-1)` capped at `max_backoff`, times a random factor
  /// in [1, 1 + jitter], where k counts the failures inside the window
  /// (this one included). Returns nothing when k exceeds `max_restarts`:
  /// the restart intensity is exhausted.
  std::optional<std::chrono::milliseconds> on_failure(
      time_point now, const restart_policy& policy, std::mt19937_64& rng);

  /// Records a failure at `now` without computing a delay; returns whether
  /// the restart intensity still allows a restart.
  bool record(time_point now, const restart_policy& policy);

  /// Returns the failures inside the window ending at `now`.
  size_t failures(time_point now, const restart_policy& policy);

  /// Returns when enough failures have left the window for the next failure
  /// to be restarted again; `now` if that is already the case.
  time_point window_end(time_point now, const restart_policy& policy) const;

  /// Returns whether no failure is recorded any more at `now`.
  bool idle(time_point now, const restart_policy& policy);

 private:
  void prune(time_point now, const restart_policy& policy);

  std::vector<time_point> failures_;  // oldest first
};

/// Returns the backoff delay after the `k`-th failure (k >= 1), before
/// jitter.
std::chrono::milliseconds backoff_delay(const restart_policy& policy,
                                        size_t k) noexcept;

}  // namespace mnemo::runtime
