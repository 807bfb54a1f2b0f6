// The Prometheus text rendering of node metrics.

#include <boost/test/unit_test.hpp>

#include <cmath>
#include <thread>

#include "mnemo/runtime/metrics.hpp"

using namespace mnemo::runtime;

namespace {

bool contains(const std::string& text, const std::string& line) {
  return text.find(line) != std::string::npos;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(metrics_text)

BOOST_AUTO_TEST_CASE(counters_and_gauges_render_with_help_type_and_labels) {
  metrics m;
  m.counter("app_requests_total", "Requests.", {{"route", "a"}}).inc(3);
  m.counter("app_requests_total", "Requests.", {{"route", "b"}}).inc();
  // Same name and labels: the same counter.
  m.counter("app_requests_total", "Requests.", {{"route", "a"}}).inc();
  m.gauge("app_active", "Active things.").set(-2);
  auto text = m.render();
  BOOST_TEST_MESSAGE(text);
  BOOST_CHECK(contains(text, "# HELP app_requests_total Requests.\n"));
  BOOST_CHECK(contains(text, "# TYPE app_requests_total counter\n"));
  BOOST_CHECK(contains(text, "app_requests_total{route=\"a\"} 4\n"));
  BOOST_CHECK(contains(text, "app_requests_total{route=\"b\"} 1\n"));
  BOOST_CHECK(contains(text, "# TYPE app_active gauge\napp_active -2\n"));
  // Families sorted by name, each announced once.
  BOOST_CHECK_LT(text.find("app_active"), text.find("app_requests_total"));
  BOOST_CHECK_EQUAL(text.find("# TYPE app_requests_total"),
                    text.rfind("# TYPE app_requests_total"));
}

BOOST_AUTO_TEST_CASE(histograms_render_cumulative_buckets_sum_and_count) {
  metrics m;
  auto& h = m.histogram("app_seconds", "Durations.", {{"op", "x"}},
                        {0.001, 0.01, 0.1});
  for (double v : {0.0005, 0.001, 0.005, 0.05, 0.5, 2.0}) h.observe(v);
  auto text = m.render();
  BOOST_TEST_MESSAGE(text);
  BOOST_CHECK(contains(text, "# TYPE app_seconds histogram\n"));
  BOOST_CHECK(contains(text, "app_seconds_bucket{op=\"x\",le=\"0.001\"} 2\n"));
  BOOST_CHECK(contains(text, "app_seconds_bucket{op=\"x\",le=\"0.01\"} 3\n"));
  BOOST_CHECK(contains(text, "app_seconds_bucket{op=\"x\",le=\"0.1\"} 4\n"));
  BOOST_CHECK(contains(text, "app_seconds_bucket{op=\"x\",le=\"+Inf\"} 6\n"));
  BOOST_CHECK(contains(text, "app_seconds_count{op=\"x\"} 6\n"));
  BOOST_CHECK(contains(text, "app_seconds_sum{op=\"x\"} 2.5565\n"));
}

BOOST_AUTO_TEST_CASE(callbacks_are_read_at_rendering_and_removable) {
  metrics m;
  double value = 1;
  auto token =
      m.gauge_fn("app_lag", "Lag.", {{"p", "one"}}, [&value] { return value; });
  m.gauge_fn("app_unknown", "Unknown.", {}, [] { return std::nan(""); });
  m.histogram_fn("app_batch", "Batches.", {}, [] {
    histogram_data h;
    h.bounds = {1, 10};
    h.counts = {5, 1, 2};
    h.sum = 40;
    return h;
  });
  BOOST_CHECK(contains(m.render(), "app_lag{p=\"one\"} 1\n"));
  value = 7;
  auto text = m.render();
  BOOST_CHECK(contains(text, "app_lag{p=\"one\"} 7\n"));
  BOOST_CHECK(contains(text, "app_unknown NaN\n"));
  BOOST_CHECK(contains(text, "app_batch_bucket{le=\"10\"} 6\n"));
  BOOST_CHECK(contains(text, "app_batch_bucket{le=\"+Inf\"} 8\n"));
  BOOST_CHECK(contains(text, "app_batch_count 8\n"));
  m.remove(token);
  text = m.render();
  BOOST_CHECK(!contains(text, "app_lag"));
  BOOST_CHECK(contains(text, "app_unknown"));
}

BOOST_AUTO_TEST_CASE(label_values_and_help_are_escaped) {
  metrics m;
  m.counter("app_total", "Line one\nback\\slash \"quoted\"",
            {{"path", "a\"b\\c\nd"}})
      .inc();
  auto text = m.render();
  BOOST_CHECK(
      contains(text, "# HELP app_total Line one\\nback\\\\slash \"quoted\"\n"));
  BOOST_CHECK(contains(text, "app_total{path=\"a\\\"b\\\\c\\nd\"} 1\n"));
}

BOOST_AUTO_TEST_CASE(concurrent_updates_are_not_lost) {
  metrics m;
  auto& c = m.counter("app_total", "Total.");
  auto& h = m.histogram("app_h", "H.", {}, {1});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.inc();
        h.observe(0.5);
      }
    });
  for (auto& t : threads) t.join();
  BOOST_CHECK_EQUAL(c.value(), 40000u);
  auto data = h.read();
  BOOST_CHECK_EQUAL(data.counts[0], 40000u);
  BOOST_CHECK_EQUAL(data.sum, 20000.0);
}

BOOST_AUTO_TEST_SUITE_END()
