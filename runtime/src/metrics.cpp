#include "mnemo/runtime/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace mnemo::runtime {

// -- histogram
// -----------------------------------------------------------------

metric_histogram::metric_histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i] = 0;
}

void metric_histogram::observe(double value) noexcept {
  auto i = static_cast<size_t>(
      std::lower_bound(bounds_.begin(), bounds_.end(), value) -
      bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  auto sum = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(sum, sum + value,
                                     std::memory_order_relaxed)) {
  }
}

histogram_data metric_histogram::read() const {
  histogram_data result;
  result.bounds = bounds_;
  for (size_t i = 0; i <= bounds_.size(); ++i)
    result.counts.push_back(counts_[i].load(std::memory_order_relaxed));
  result.sum = sum_.load(std::memory_order_relaxed);
  return result;
}

// -- rendering helpers
// ---------------------------------------------------------

namespace {

std::string number(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "+Inf" : "-Inf";
  if (x == std::floor(x) && std::fabs(x) < 1e15)
    return std::to_string(static_cast<int64_t>(x));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", x);
  return buf;
}

std::string escape(const std::string& value, bool help) {
  std::string result;
  for (auto c : value) {
    if (c == '\\')
      result += "\\\\";
    else if (c == '\n')
      result += "\\n";
    else if (c == '"' && !help)
      result += "\\\"";
    else
      result += c;
  }
  return result;
}

std::string label_text(const metric_labels& labels,
                       const std::pair<std::string, std::string>* extra) {
  if (labels.empty() && extra == nullptr) return {};
  std::string result = "{";
  auto add = [&](const std::pair<std::string, std::string>& kv) {
    if (result.size() > 1) result += ',';
    result += kv.first + "=\"" + escape(kv.second, false) + '"';
  };
  for (auto& kv : labels) add(kv);
  if (extra != nullptr) add(*extra);
  return result + '}';
}

void render_histogram(std::string& out, const std::string& name,
                      const metric_labels& labels, const histogram_data& h) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.counts.size(); ++i) {
    cumulative += h.counts[i];
    std::pair<std::string, std::string> le{
        "le", i < h.bounds.size() ? number(h.bounds[i]) : "+Inf"};
    out += name + "_bucket" + label_text(labels, &le) + ' ' +
           std::to_string(cumulative) + '\n';
  }
  out +=
      name + "_sum" + label_text(labels, nullptr) + ' ' + number(h.sum) + '\n';
  out += name + "_count" + label_text(labels, nullptr) + ' ' +
         std::to_string(cumulative) + '\n';
}

}  // namespace

// -- registry
// ------------------------------------------------------------------

metrics::series& metrics::find_or_add(const std::string& name,
                                      const std::string& help, kind type,
                                      const metric_labels& labels) {
  auto& fam = families_[name];
  if (fam.members.empty()) {
    fam.help = help;
    fam.type = type;
  }
  for (auto& s : fam.members)
    if (s->token == 0 && s->labels == labels) return *s;
  fam.members.push_back(std::make_unique<series>());
  fam.members.back()->labels = labels;
  return *fam.members.back();
}

metric_counter& metrics::counter(const std::string& name,
                                 const std::string& help,
                                 const metric_labels& labels) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto& s = find_or_add(name, help, kind::counter, labels);
  if (!s.owned_counter) s.owned_counter = std::make_unique<metric_counter>();
  return *s.owned_counter;
}

metric_gauge& metrics::gauge(const std::string& name, const std::string& help,
                             const metric_labels& labels) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto& s = find_or_add(name, help, kind::gauge, labels);
  if (!s.owned_gauge) s.owned_gauge = std::make_unique<metric_gauge>();
  return *s.owned_gauge;
}

metric_histogram& metrics::histogram(const std::string& name,
                                     const std::string& help,
                                     const metric_labels& labels,
                                     std::vector<double> bounds) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto& s = find_or_add(name, help, kind::histogram, labels);
  if (!s.owned_histogram)
    s.owned_histogram = std::make_unique<metric_histogram>(std::move(bounds));
  return *s.owned_histogram;
}

uint64_t metrics::add_fn(const std::string& name, const std::string& help,
                         kind type, const metric_labels& labels,
                         std::function<double()> value_fn,
                         std::function<histogram_data()> histogram_fn) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto& fam = families_[name];
  if (fam.members.empty()) {
    fam.help = help;
    fam.type = type;
  }
  auto s = std::make_unique<series>();
  s->labels = labels;
  s->token = next_token_++;
  s->value_fn = std::move(value_fn);
  s->histogram_fn = std::move(histogram_fn);
  fam.members.push_back(std::move(s));
  return fam.members.back()->token;
}

uint64_t metrics::gauge_fn(const std::string& name, const std::string& help,
                           const metric_labels& labels,
                           std::function<double()> fn) {
  return add_fn(name, help, kind::gauge, labels, std::move(fn), nullptr);
}

uint64_t metrics::counter_fn(const std::string& name, const std::string& help,
                             const metric_labels& labels,
                             std::function<double()> fn) {
  return add_fn(name, help, kind::counter, labels, std::move(fn), nullptr);
}

uint64_t metrics::histogram_fn(const std::string& name, const std::string& help,
                               const metric_labels& labels,
                               std::function<histogram_data()> fn) {
  return add_fn(name, help, kind::histogram, labels, nullptr, std::move(fn));
}

void metrics::remove(uint64_t token) {
  if (token == 0) return;
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto i = families_.begin(); i != families_.end(); ++i) {
    auto& members = i->second.members;
    auto j = std::find_if(members.begin(), members.end(),
                          [token](auto& s) { return s->token == token; });
    if (j == members.end()) continue;
    members.erase(j);
    if (members.empty()) families_.erase(i);
    return;
  }
}

std::string metrics::render() const {
  static constexpr const char* type_names[] = {"counter", "gauge", "histogram"};
  std::lock_guard<std::mutex> guard{mtx_};
  std::string out;
  for (auto& [name, fam] : families_) {
    out += "# HELP " + name + ' ' + escape(fam.help, true) + '\n';
    out +=
        "# TYPE " + name + ' ' + type_names[static_cast<int>(fam.type)] + '\n';
    for (auto& s : fam.members) {
      if (fam.type == kind::histogram) {
        auto data =
            s->owned_histogram ? s->owned_histogram->read() : s->histogram_fn();
        render_histogram(out, name, s->labels, data);
        continue;
      }
      double value = 0;
      if (s->owned_counter)
        value = static_cast<double>(s->owned_counter->value());
      else if (s->owned_gauge)
        value = static_cast<double>(s->owned_gauge->value());
      else
        value = s->value_fn();
      out += name + label_text(s->labels, nullptr) + ' ' + number(value) + '\n';
    }
  }
  return out;
}

}  // namespace mnemo::runtime
