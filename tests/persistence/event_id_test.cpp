#include "mnemo/persistence/event_id.hpp"

#include <chrono>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

using namespace mnemo::persistence;
namespace mp = mnemo::persistence;

namespace {

uint64_t unix_ms_of(const mp::event_id& id) {
  uint64_t ms = 0;
  for (int i = 0; i < 6; ++i) ms = (ms << 8) | id.bytes[i];
  return ms;
}

uint64_t now_ms() {
  using namespace std::chrono;
  return static_cast<uint64_t>(
      duration_cast<milliseconds>(system_clock::now().time_since_epoch())
          .count());
}

bool is_v7(const mp::event_id& id) {
  // Version nibble 0111 in byte 6, variant bits 10 in byte 8.
  return (id.bytes[6] >> 4) == 0x7 && (id.bytes[8] & 0xc0) == 0x80;
}

std::vector<mp::event_id> make_many(size_t n) {
  std::vector<mp::event_id> ids;
  ids.reserve(n);
  for (size_t i = 0; i < n; ++i) ids.push_back(mp::event_id::make_v7());
  return ids;
}

// Returns the index of the first id not above its predecessor, or n.
size_t first_unordered(const std::vector<mp::event_id>& ids) {
  for (size_t i = 1; i < ids.size(); ++i)
    if (!(ids[i - 1] < ids[i])) return i;
  return ids.size();
}

// RFC 9562, appendix A.6 example of a version-7 id.
const std::string rfc_example = "017f22e2-79b0-7cc3-98c4-dc0c0c07398f";

}  // namespace

BOOST_AUTO_TEST_SUITE(event_id)

BOOST_AUTO_TEST_CASE(make_v7_sets_version_and_variant) {
  for (int i = 0; i < 1000; ++i) {
    auto id = mp::event_id::make_v7();
    BOOST_TEST_CONTEXT("id " << id.to_string()) {
      BOOST_TEST((id.bytes[6] >> 4) == 0x7);
      BOOST_TEST((id.bytes[8] & 0xc0) == 0x80);
      BOOST_TEST(!id.is_nil());
      auto text = id.to_string();
      BOOST_TEST(text[14] == '7');
      BOOST_TEST((text[19] == '8' || text[19] == '9' || text[19] == 'a' ||
                  text[19] == 'b'));
    }
  }
}

BOOST_AUTO_TEST_CASE(ids_made_in_a_row_strictly_increase) {
  constexpr size_t n = 100000;
  auto ids = make_many(n);
  auto bad = first_unordered(ids);
  BOOST_TEST_INFO("id " << bad << " is not above its predecessor");
  BOOST_TEST(bad == n);
  // Byte-wise order and the canonical text order agree.
  BOOST_TEST(ids.front().to_string() < ids.back().to_string());
  std::set<mp::event_id> unique(ids.begin(), ids.end());
  BOOST_TEST(unique.size() == n);
}

BOOST_AUTO_TEST_CASE(ids_from_two_threads_are_unique_and_ordered_per_thread) {
  constexpr size_t n = 50000;
  std::vector<mp::event_id> a;
  std::vector<mp::event_id> b;
  std::thread ta{[&] { a = make_many(n); }};
  std::thread tb{[&] { b = make_many(n); }};
  ta.join();
  tb.join();
  BOOST_TEST(first_unordered(a) == n);
  BOOST_TEST(first_unordered(b) == n);
  std::set<mp::event_id> all(a.begin(), a.end());
  all.insert(b.begin(), b.end());
  BOOST_TEST(all.size() == 2 * n);
  for (auto* ids : {&a, &b})
    for (auto& id : *ids)
      if (!is_v7(id)) BOOST_FAIL("not a v7 id: " << id.to_string());
}

BOOST_AUTO_TEST_CASE(first_48_bits_are_unix_milliseconds) {
  auto before = now_ms();
  auto id = mp::event_id::make_v7();
  auto after = now_ms();
  auto ms = unix_ms_of(id);
  BOOST_TEST_INFO("id ms " << ms << ", clock " << before << ".." << after);
  BOOST_TEST(ms + 1000 >= before);
  BOOST_TEST(ms <= after + 1000);
  // The RFC example carries 2022-02-22 19:22:22 UTC.
  auto parsed = mp::event_id::parse(rfc_example);
  BOOST_REQUIRE(parsed);
  BOOST_TEST(unix_ms_of(*parsed) == uint64_t{0x017f22e279b0});
  BOOST_TEST(is_v7(*parsed));
}

BOOST_AUTO_TEST_CASE(to_string_and_parse_round_trip) {
  mp::event_id known;
  for (size_t i = 0; i < 16; ++i)
    known.bytes[i] = static_cast<uint8_t>(0xa0 + i * 3);
  BOOST_TEST(known.to_string() == "a0a3a6a9-acaf-b2b5-b8bb-bec1c4c7cacd");
  auto back = mp::event_id::parse(known.to_string());
  BOOST_REQUIRE(back);
  BOOST_TEST((*back == known));
  auto rfc = mp::event_id::parse(rfc_example);
  BOOST_REQUIRE(rfc);
  BOOST_TEST(rfc->to_string() == rfc_example);
  for (int i = 0; i < 100; ++i) {
    auto id = mp::event_id::make_v7();
    auto text = id.to_string();
    BOOST_TEST(text.size() == 36u);
    auto parsed = mp::event_id::parse(text);
    BOOST_REQUIRE(parsed);
    BOOST_TEST((*parsed == id));
  }
}

BOOST_AUTO_TEST_CASE(parse_rejects_malformed_text) {
  BOOST_REQUIRE(mp::event_id::parse(rfc_example));
  std::vector<std::string> bad = {
      "",
      rfc_example.substr(0, 35),               // one short
      rfc_example + "0",                       // one long
      "017f22e279b07cc398c4dc0c0c07398f",      // no dashes
      "{" + rfc_example + "}",                 // braces
      " " + rfc_example.substr(1),             // space
      "017f22e2-79b0-7cc3-98c4-dc0c0c07398g",  // 'g'
      "017f22e2-79b0-7cc3-98c4-dc0c0c07398-",  // dash as last digit
      "x17f22e2-79b0-7cc3-98c4-dc0c0c07398f",  // 'x'
      "017f22e2079b0-7cc3-98c4-dc0c0c07398f",  // digit at a dash
      "017f22e-279b0-7cc3-98c4-dc0c0c07398f",  // dash moved left
      "017f22e27-9b0-7cc3-98c4-dc0c0c07398f",  // dash moved right
      "017f22e2-79b07-cc3-98c4-dc0c0c07398f",  // second dash moved
      "017f22e2-79b0-7cc398-c4-dc0c0c07398f",  // third dash moved
      "017f22e2-79b0-7cc3-98c4d-c0c0c07398f",  // fourth dash moved
      "017f22e2_79b0_7cc3_98c4_dc0c0c07398f",  // underscores
      std::string("017f22e2-79b0-7cc3-98c4-dc0c0c07398\0", 36),
  };
  for (auto& text : bad) {
    BOOST_TEST_CONTEXT("text '" << text << "'") {
      BOOST_TEST(!mp::event_id::parse(text).has_value());
    }
  }
}

BOOST_AUTO_TEST_CASE(nil_id) {
  mp::event_id id;
  BOOST_TEST(id.is_nil());
  BOOST_TEST(id.to_string() == "00000000-0000-0000-0000-000000000000");
  auto parsed = mp::event_id::parse("00000000-0000-0000-0000-000000000000");
  BOOST_REQUIRE(parsed);
  BOOST_TEST(parsed->is_nil());
  id.bytes[15] = 1;
  BOOST_TEST(!id.is_nil());
  BOOST_TEST(!mp::event_id::make_v7().is_nil());
}

BOOST_AUTO_TEST_CASE(journal_assigns_v7_ids_to_nil_ids) {
  mnemo::test::journal_fixture f;
  std::vector<new_event> batch;
  for (auto v : {"a", "b", "c"})
    batch.push_back(mnemo::test::make_event("t", v));
  // A caller-chosen id is kept as it is.
  auto own = mp::event_id::parse(rfc_example);
  BOOST_REQUIRE(own);
  auto with_own = mnemo::test::make_event("t", "d");
  with_own.id = *own;
  batch.push_back(with_own);
  BOOST_REQUIRE(batch[0].id.is_nil());
  auto before = now_ms();
  auto res = f.j->append("ids-1", batch, expected_version::no_stream());
  BOOST_REQUIRE_MESSAGE(res, (res ? std::string{} : res.error().to_string()));
  auto& refs = res->events;
  BOOST_REQUIRE(refs.size() == 4u);
  for (size_t i = 0; i < 3; ++i) {
    BOOST_TEST_CONTEXT("event " << i << " id " << refs[i].id.to_string()) {
      BOOST_TEST(!refs[i].id.is_nil());
      BOOST_TEST(is_v7(refs[i].id));
      BOOST_TEST(unix_ms_of(refs[i].id) + 1000 >= before);
      BOOST_TEST(unix_ms_of(refs[i].id) <= now_ms() + 1000);
      if (i > 0) BOOST_TEST((refs[i - 1].id < refs[i].id));
    }
  }
  BOOST_TEST((refs[3].id == *own));
  auto stored =
      f.j->read_stream("ids-1", 1, std::numeric_limits<uint64_t>::max(), 10);
  BOOST_REQUIRE(stored);
  BOOST_REQUIRE(stored->size() == 4u);
  for (size_t i = 0; i < 4; ++i) BOOST_TEST(((*stored)[i].id == refs[i].id));
}

BOOST_AUTO_TEST_SUITE_END()
