#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>

namespace mnemo::runtime {

/// Where journal completions (which arrive on the journal's writer or
/// completer thread) are handed over to the actor world. A completion is a
/// closure that sends a message to an actor.
///
/// In production the closure runs at once on the journal's thread: CAF actor
/// handles are thread-safe. Under CAF's deterministic test scheduler, whose
/// queue is not thread-safe, a `deferred_completions` sink queues them for
/// the test thread instead.
class completion_sink {
 public:
  virtual ~completion_sink() = default;

  /// Hands `fn` over; called on a journal thread. Must not block.
  virtual void post(std::function<void()> fn) = 0;

  /// Records that a completion is expected (called before the journal
  /// request is made, on the actor's thread).
  virtual void expect() {
    // Production sinks do not track outstanding requests.
  }
};

/// Runs each completion immediately on the posting thread.
class immediate_completions final : public completion_sink {
 public:
  void post(std::function<void()> fn) override { fn(); }
};

/// Queues completions until `drain` runs them on the calling thread; for
/// deterministic tests. Thread-safe.
class deferred_completions final : public completion_sink {
 public:
  void post(std::function<void()> fn) override {
    std::lock_guard<std::mutex> guard{mtx_};
    queue_.push_back(std::move(fn));
    cv_.notify_all();
  }

  void expect() override {
    std::lock_guard<std::mutex> guard{mtx_};
    ++outstanding_;
  }

  /// Waits until every expected completion was posted, then runs them in
  /// arrival order; returns how many ran.
  size_t drain() {
    std::deque<std::function<void()>> ready;
    {
      std::unique_lock<std::mutex> guard{mtx_};
      cv_.wait(guard, [this] { return queue_.size() >= outstanding_; });
      ready.swap(queue_);
      // Posts without `expect` (e.g. notifications) must not wrap around.
      outstanding_ -= std::min(outstanding_, ready.size());
    }
    for (auto& fn : ready) fn();
    return ready.size();
  }

 private:
  std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  size_t outstanding_ = 0;
};

}  // namespace mnemo::runtime
