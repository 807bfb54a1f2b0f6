#pragma once

// Node metrics in the Prometheus text exposition format (version 0.0.4):
// counters and histograms owned by the registry and updated lock-free, plus
// values read through callbacks when the text is rendered (journal
// counters, projection lag, entity counts). No CAF in this header.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace mnemo::runtime {

/// Label names and values of one time series, e.g. {{"aggregate",
/// "account"}}.
using metric_labels = std::vector<std::pair<std::string, std::string>>;

/// A monotonically increasing count.
class metric_counter {
 public:
  void inc(uint64_t n = 1) noexcept {
    value_.fetch_add(n, std::memory_order_relaxed);
  }
  uint64_t value() const noexcept {
    return value_.load(std::memory_order_relaxed);
  }

 private:
  std::atomic<uint64_t> value_{0};
};

/// A value that goes up and down.
class metric_gauge {
 public:
  void set(int64_t x) noexcept { value_.store(x, std::memory_order_relaxed); }
  void add(int64_t n) noexcept {
    value_.fetch_add(n, std::memory_order_relaxed);
  }
  int64_t value() const noexcept {
    return value_.load(std::memory_order_relaxed);
  }

 private:
  std::atomic<int64_t> value_{0};
};

/// What a histogram holds at one moment: per-bucket counts (not
/// cumulative), the last one for values above every bound.
struct histogram_data {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;
  double sum = 0;
};

/// A distribution over fixed buckets.
class metric_histogram {
 public:
  /// `bounds`: ascending upper bounds of the buckets.
  explicit metric_histogram(std::vector<double> bounds);

  void observe(double value) noexcept;

  histogram_data read() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

/// The metrics of a node. Registration and rendering take a lock; updates
/// of counters and histograms do not. Every member function may be called
/// from any thread.
class metrics {
 public:
  metrics() = default;
  metrics(const metrics&) = delete;
  metrics& operator=(const metrics&) = delete;

  /// Returns the counter `name{labels}`, creating it on first use. Names
  /// follow Prometheus rules (`[a-zA-Z_:][a-zA-Z0-9_:]*`); counters end in
  /// `_total` by convention.
  metric_counter& counter(const std::string& name, const std::string& help,
                          const metric_labels& labels = {});

  /// Returns the gauge `name{labels}`, creating it on first use.
  metric_gauge& gauge(const std::string& name, const std::string& help,
                      const metric_labels& labels = {});

  /// Returns the histogram `name{labels}`, creating it on first use with
  /// `bounds` (later calls keep the first bounds).
  metric_histogram& histogram(const std::string& name, const std::string& help,
                              const metric_labels& labels,
                              std::vector<double> bounds);

  /// Adds a gauge read by `fn` at each rendering (return NaN when the
  /// value is unknown). Returns a token for `remove`. Callbacks run under
  /// the registry's lock: they must be quick and must not use `*this`.
  uint64_t gauge_fn(const std::string& name, const std::string& help,
                    const metric_labels& labels, std::function<double()> fn);

  /// Adds a counter read by `fn` at each rendering; returns a token.
  uint64_t counter_fn(const std::string& name, const std::string& help,
                      const metric_labels& labels, std::function<double()> fn);

  /// Adds a histogram read by `fn` at each rendering; returns a token.
  uint64_t histogram_fn(const std::string& name, const std::string& help,
                        const metric_labels& labels,
                        std::function<histogram_data()> fn);

  /// Removes the callback series of `token` (a no-op for unknown tokens).
  void remove(uint64_t token);

  /// Returns every series in the Prometheus text format, families sorted
  /// by name, each with its HELP and TYPE lines.
  std::string render() const;

 private:
  enum class kind { counter, gauge, histogram };

  struct series {
    metric_labels labels;
    uint64_t token = 0;
    std::unique_ptr<metric_counter> owned_counter;
    std::unique_ptr<metric_gauge> owned_gauge;
    std::unique_ptr<metric_histogram> owned_histogram;
    std::function<double()> value_fn;
    std::function<histogram_data()> histogram_fn;
  };

  struct family {
    std::string help;
    kind type = kind::counter;
    std::vector<std::unique_ptr<series>> members;
  };

  series& find_or_add(const std::string& name, const std::string& help,
                      kind type, const metric_labels& labels);
  uint64_t add_fn(const std::string& name, const std::string& help, kind type,
                  const metric_labels& labels, std::function<double()> value_fn,
                  std::function<histogram_data()> histogram_fn);

  mutable std::mutex mtx_;
  std::map<std::string, family> families_;
  uint64_t next_token_ = 1;
};

/// Converts the bounds of an integer histogram (e.g. `journal_stats`) to
/// the bounds of a `histogram_data`, scaled by `factor` (1e-6 turns
/// microseconds into seconds).
template <class Array>
std::vector<double> scaled_bounds(const Array& bounds, double factor) {
  std::vector<double> result;
  for (auto b : bounds) result.push_back(static_cast<double>(b) * factor);
  return result;
}

}  // namespace mnemo::runtime
