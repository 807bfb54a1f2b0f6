#include "mnemo/persistence/event_registry.hpp"

#include <cctype>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <msgpack.hpp>
#include <nlohmann/json.hpp>

#include "test_support.hpp"

using namespace mnemo::persistence;
using nlohmann::json;
namespace mp = mnemo::persistence;

namespace {

// Current shape of "account.deposited" (version 1). `currency` was added
// to the struct later without a version bump: old bytes lack it.
struct deposited {
  std::string account;
  int64_t amount = 0;
  std::string currency = "EUR";
  MSGPACK_DEFINE_MAP(account, amount, currency)
};

// The shape "account.deposited" had before `currency` existed; never
// registered, only used to produce old bytes.
struct deposited_before_currency {
  std::string account;
  int64_t amount = 0;
  MSGPACK_DEFINE_MAP(account, amount)
};

// "customer.registered" version 3. Version 1 was {name, mail}; version 2
// renamed mail -> email; version 3 split name into first/last and added
// tier.
struct customer_registered {
  std::string first_name;
  std::string last_name;
  std::string email;
  std::string tier = "basic";
  MSGPACK_DEFINE_MAP(first_name, last_name, email, tier)
};

// Encodes as a msgpack array, which the registry must refuse.
struct array_shaped {
  int32_t a = 1;
  std::string b = "x";
  MSGPACK_DEFINE(a, b)
};

struct never_registered {
  int32_t x = 0;
  MSGPACK_DEFINE_MAP(x)
};

const std::string stream_name = "customer-17";
constexpr uint64_t record_sequence = 4242;

std::vector<uint8_t> msgpack_of(const json& doc) {
  return json::to_msgpack(doc);
}

event_envelope envelope(std::string type, uint32_t version,
                        std::vector<uint8_t> payload) {
  event_envelope env;
  env.stream_id = stream_name;
  env.sequence = record_sequence;
  env.position = 99;
  env.type = std::move(type);
  env.schema_version = version;
  env.payload = std::move(payload);
  return env;
}

// Returns whether `text` contains `n` as a whole number (not as part of a
// longer run of digits).
bool has_number(const std::string& text, uint64_t n) {
  auto digits = std::to_string(n);
  for (auto pos = text.find(digits); pos != std::string::npos;
       pos = text.find(digits, pos + 1)) {
    auto end = pos + digits.size();
    auto before_ok =
        pos == 0 || !std::isdigit(static_cast<unsigned char>(text[pos - 1]));
    auto after_ok = end == text.size() ||
                    !std::isdigit(static_cast<unsigned char>(text[end]));
    if (before_ok && after_ok) return true;
  }
  return false;
}

// Checks that `err` has `code` and a message naming the record.
void check_record_error(const error& err, errc code, const std::string& type,
                        uint32_t version,
                        const std::string& stream = stream_name,
                        uint64_t sequence = record_sequence) {
  BOOST_TEST_CONTEXT("error: " << err.to_string()) {
    BOOST_CHECK(err.code() == code);
    const auto& msg = err.message();
    BOOST_CHECK_MESSAGE(msg.find(type) != std::string::npos,
                        "message names the type '" << type << "'");
    BOOST_CHECK_MESSAGE(has_number(msg, version),
                        "message names the version " << version);
    BOOST_CHECK_MESSAGE(msg.find(stream) != std::string::npos,
                        "message names the stream '" << stream << "'");
    BOOST_CHECK_MESSAGE(has_number(msg, sequence),
                        "message names the sequence " << sequence);
  }
}

json customer_v1() {
  return json{{"name", "Ada Lovelace"}, {"mail", "ada@example.org"}};
}

json customer_v2() {
  return json{{"name", "Grace Hopper"}, {"email", "grace@example.org"}};
}

struct registry_fixture {
  mp::event_registry reg;
  int rename_calls = 0;
  int split_calls = 0;

  registry_fixture() {
    BOOST_REQUIRE(!reg.add<deposited>("account.deposited"));
    BOOST_REQUIRE(!reg.add<customer_registered>("customer.registered", 3));
    // v1 -> v2: rename mail to email. Uses at() so that running it on a v2
    // payload would throw.
    BOOST_REQUIRE(!reg.add_upcaster("customer.registered", 1, [this](json& p) {
      ++rename_calls;
      p["email"] = p.at("mail");
      p.erase("mail");
    }));
    // v2 -> v3: split name, add tier.
    BOOST_REQUIRE(!reg.add_upcaster("customer.registered", 2, [this](json& p) {
      ++split_calls;
      auto full = p.at("name").get<std::string>();
      auto space = full.find(' ');
      p["first_name"] = full.substr(0, space);
      p["last_name"] =
          space == std::string::npos ? std::string{} : full.substr(space + 1);
      p.erase("name");
      p["tier"] = "legacy";
    }));
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(event_registry)

BOOST_FIXTURE_TEST_CASE(round_trip_keeps_name_version_and_map_payload,
                        registry_fixture) {
  BOOST_REQUIRE(reg.name_of<deposited>() != nullptr);
  BOOST_TEST(*reg.name_of<deposited>() == "account.deposited");
  BOOST_TEST((reg.name_of<never_registered>() == nullptr));
  BOOST_TEST(reg.version_of("account.deposited") == 1u);
  BOOST_TEST(reg.version_of("customer.registered") == 3u);
  BOOST_TEST(reg.version_of("nope") == 0u);
  BOOST_TEST((reg.names() == std::vector<std::string>{"account.deposited",
                                                      "customer.registered"}));
  auto ev = reg.to_event(deposited{"acc-1", -250, "CHF"});
  BOOST_REQUIRE_MESSAGE(ev, (ev ? std::string{} : ev.error().to_string()));
  BOOST_TEST(ev->type == "account.deposited");
  BOOST_TEST(ev->schema_version == 1u);
  BOOST_TEST(ev->id.is_nil());
  // The payload is a msgpack map keyed by field name.
  auto doc = json::from_msgpack(ev->payload);
  BOOST_REQUIRE(doc.is_object());
  BOOST_TEST(doc.size() == 3u);
  BOOST_TEST(doc.at("account") == "acc-1");
  BOOST_TEST(doc.at("amount") == -250);
  BOOST_TEST(doc.at("currency") == "CHF");
  auto env = envelope(ev->type, ev->schema_version, ev->payload);
  auto back = reg.decode<deposited>(env);
  BOOST_REQUIRE_MESSAGE(back,
                        (back ? std::string{} : back.error().to_string()));
  BOOST_TEST(back->account == "acc-1");
  BOOST_TEST(back->amount == -250);
  BOOST_TEST(back->currency == "CHF");
  // A current-version payload is upcast to itself, unchanged.
  auto same = reg.upcast(env);
  BOOST_REQUIRE(same);
  BOOST_TEST((*same == ev->payload));
}

BOOST_FIXTURE_TEST_CASE(encode_fills_type_version_and_payload,
                        registry_fixture) {
  std::string type;
  uint32_t version = 0;
  std::vector<uint8_t> payload;
  customer_registered c{"Ada", "Lovelace", "ada@example.org", "gold"};
  BOOST_REQUIRE(!reg.encode(c, type, version, payload));
  BOOST_TEST(type == "customer.registered");
  BOOST_TEST(version == 3u);
  auto back =
      reg.decode_payload<customer_registered>(type, version, payload, "s", 1);
  BOOST_REQUIRE(back);
  BOOST_TEST(back->last_name == "Lovelace");
  BOOST_TEST(back->tier == "gold");
}

BOOST_FIXTURE_TEST_CASE(new_field_defaults_and_extra_fields_are_ignored,
                        registry_fixture) {
  msgpack::sbuffer buf;
  msgpack::pack(buf, deposited_before_currency{"acc-old", 70});
  std::vector<uint8_t> old_bytes(buf.data(), buf.data() + buf.size());
  auto old = reg.decode<deposited>(envelope("account.deposited", 1, old_bytes));
  BOOST_REQUIRE_MESSAGE(old, (old ? std::string{} : old.error().to_string()));
  BOOST_TEST(old->account == "acc-old");
  BOOST_TEST(old->amount == 70);
  BOOST_TEST(old->currency == "EUR");
  auto extra = msgpack_of(json{{"account", "acc-x"},
                               {"amount", 5},
                               {"note", "from a newer writer"},
                               {"flags", json::array({1, 2, 3})},
                               {"currency", "USD"}});
  auto dec = reg.decode<deposited>(envelope("account.deposited", 1, extra));
  BOOST_REQUIRE_MESSAGE(dec, (dec ? std::string{} : dec.error().to_string()));
  BOOST_TEST(dec->account == "acc-x");
  BOOST_TEST(dec->amount == 5);
  BOOST_TEST(dec->currency == "USD");
}

BOOST_FIXTURE_TEST_CASE(upcaster_chain_runs_from_the_stored_version,
                        registry_fixture) {
  auto v1 = reg.decode<customer_registered>(
      envelope("customer.registered", 1, msgpack_of(customer_v1())));
  BOOST_REQUIRE_MESSAGE(v1, (v1 ? std::string{} : v1.error().to_string()));
  BOOST_TEST(v1->first_name == "Ada");
  BOOST_TEST(v1->last_name == "Lovelace");
  BOOST_TEST(v1->email == "ada@example.org");
  BOOST_TEST(v1->tier == "legacy");
  BOOST_TEST(rename_calls == 1);
  BOOST_TEST(split_calls == 1);
  // A v2 payload only runs the v2 -> v3 step (the v1 step would throw).
  auto v2 = reg.decode<customer_registered>(
      envelope("customer.registered", 2, msgpack_of(customer_v2())));
  BOOST_REQUIRE_MESSAGE(v2, (v2 ? std::string{} : v2.error().to_string()));
  BOOST_TEST(v2->first_name == "Grace");
  BOOST_TEST(v2->last_name == "Hopper");
  BOOST_TEST(v2->email == "grace@example.org");
  BOOST_TEST(v2->tier == "legacy");
  BOOST_TEST(rename_calls == 1);
  BOOST_TEST(split_calls == 2);
  // upcast() hands out the v3 bytes.
  auto bytes =
      reg.upcast(envelope("customer.registered", 1, msgpack_of(customer_v1())));
  BOOST_REQUIRE(bytes);
  auto doc = json::from_msgpack(*bytes);
  BOOST_TEST(doc.at("email") == "ada@example.org");
  BOOST_TEST(doc.at("first_name") == "Ada");
  BOOST_TEST(!doc.contains("mail"));
  BOOST_TEST(!doc.contains("name"));
}

BOOST_AUTO_TEST_CASE(missing_upcaster_step_is_unknown_schema_version) {
  mp::event_registry reg;
  BOOST_REQUIRE(!reg.add<customer_registered>("customer.registered", 3));
  // Only 1 -> 2 exists; a v1 or v2 record has no path to v3.
  BOOST_REQUIRE(!reg.add_upcaster("customer.registered", 1, [](json& p) {
    p["email"] = p.at("mail");
    p.erase("mail");
  }));
  for (uint32_t version : {1u, 2u}) {
    auto payload = msgpack_of(version == 1 ? customer_v1() : customer_v2());
    auto env = envelope("customer.registered", version, payload);
    auto res = reg.decode<customer_registered>(env);
    BOOST_REQUIRE(!res);
    check_record_error(res.error(), errc::unknown_schema_version,
                       "customer.registered", version);
    auto up = reg.upcast(env);
    BOOST_REQUIRE(!up);
    BOOST_TEST((up.error().code() == errc::unknown_schema_version));
    auto js = reg.payload_json(env);
    BOOST_REQUIRE(!js);
    BOOST_TEST((js.error().code() == errc::unknown_schema_version));
  }
}

BOOST_FIXTURE_TEST_CASE(newer_version_than_current_is_unknown_schema_version,
                        registry_fixture) {
  auto res = reg.decode<customer_registered>(
      envelope("customer.registered", 7, msgpack_of(customer_v2())));
  BOOST_REQUIRE(!res);
  check_record_error(res.error(), errc::unknown_schema_version,
                     "customer.registered", 7);
  auto dep = reg.decode<deposited>(
      envelope("account.deposited", 2,
               msgpack_of(json{{"account", "a"}, {"amount", 1}})));
  BOOST_REQUIRE(!dep);
  check_record_error(dep.error(), errc::unknown_schema_version,
                     "account.deposited", 2);
}

BOOST_FIXTURE_TEST_CASE(unknown_type_is_reported_with_the_record,
                        registry_fixture) {
  auto env = envelope("account.closed", 5, msgpack_of(json{{"why", "x"}}));
  auto res = reg.decode<deposited>(env);
  BOOST_REQUIRE(!res);
  check_record_error(res.error(), errc::unknown_event_type, "account.closed",
                     5);
  auto up = reg.upcast(env);
  BOOST_REQUIRE(!up);
  BOOST_TEST((up.error().code() == errc::unknown_event_type));
  // Encoding an unregistered C++ type fails the same way.
  auto ev = reg.to_event(never_registered{3});
  BOOST_REQUIRE(!ev);
  BOOST_TEST((ev.error().code() == errc::unknown_event_type));
}

BOOST_FIXTURE_TEST_CASE(payload_that_does_not_fit_is_decode_failed,
                        registry_fixture) {
  const std::string type = "account.deposited";
  std::vector<std::vector<uint8_t>> bad = {
      // A string where an int is expected.
      msgpack_of(json{{"account", "a"}, {"amount", "lots"}}),
      // A map where a string is expected.
      msgpack_of(json{{"account", json{{"id", 1}}}, {"amount", 1}}),
      // Valid msgpack, but an array instead of a map.
      msgpack_of(json::array({"a", 1, "EUR"})),
      // Not msgpack at all: 0xc1 is never used.
      {0xc1, 0x00, 0x01},
      // A truncated map.
      {0x82, 0xa1, 'a'},
      // No bytes.
      {},
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    BOOST_TEST_CONTEXT("bad payload #" << i) {
      auto res = reg.decode<deposited>(envelope(type, 1, bad[i]));
      BOOST_REQUIRE(!res);
      check_record_error(res.error(), errc::decode_failed, type, 1);
    }
  }
  // Garbage in an old version fails while upcasting, with the same code.
  auto old = reg.decode<customer_registered>(
      envelope("customer.registered", 1, {0xc1}));
  BOOST_REQUIRE(!old);
  check_record_error(old.error(), errc::decode_failed, "customer.registered",
                     1);
}

BOOST_FIXTURE_TEST_CASE(throwing_upcaster_is_decode_failed, registry_fixture) {
  // The v1 -> v2 step needs "mail"; json::at throws out_of_range.
  auto env =
      envelope("customer.registered", 1, msgpack_of(json{{"name", "No Mail"}}));
  auto res = reg.decode<customer_registered>(env);
  BOOST_REQUIRE(!res);
  check_record_error(res.error(), errc::decode_failed, "customer.registered",
                     1);
  auto js = reg.payload_json(env);
  BOOST_REQUIRE(!js);
  BOOST_TEST((js.error().code() == errc::decode_failed));
}

BOOST_FIXTURE_TEST_CASE(decoding_as_another_cxx_type_is_decode_failed,
                        registry_fixture) {
  // The payload would even fit: the registry must refuse by type, not luck.
  auto payload =
      msgpack_of(json{{"first_name", "A"}, {"last_name", "B"}, {"email", "c"}});
  auto env = envelope("customer.registered", 3, payload);
  auto other_registered = reg.decode<deposited>(env);
  BOOST_REQUIRE(!other_registered);
  check_record_error(other_registered.error(), errc::decode_failed,
                     "customer.registered", 3);
  auto unregistered = reg.decode<never_registered>(env);
  BOOST_REQUIRE(!unregistered);
  check_record_error(unregistered.error(), errc::decode_failed,
                     "customer.registered", 3);
}

BOOST_AUTO_TEST_CASE(bad_registrations_are_invalid_argument) {
  mp::event_registry reg;
  BOOST_REQUIRE(!reg.add<deposited>("account.deposited", 2));
  auto same_name = reg.add<customer_registered>("account.deposited", 5);
  BOOST_TEST((same_name.code() == errc::invalid_argument));
  BOOST_TEST(!same_name.message().empty());
  auto same_type = reg.add<deposited>("account.deposited.v2");
  BOOST_TEST((same_type.code() == errc::invalid_argument));
  auto version_zero = reg.add<customer_registered>("customer.registered", 0);
  BOOST_TEST((version_zero.code() == errc::invalid_argument));
  auto empty_name = reg.add<customer_registered>("");
  BOOST_TEST((empty_name.code() == errc::invalid_argument));
  // Failed registrations change nothing.
  BOOST_TEST(reg.version_of("account.deposited") == 2u);
  BOOST_REQUIRE(reg.name_of<deposited>() != nullptr);
  BOOST_TEST(*reg.name_of<deposited>() == "account.deposited");
  BOOST_TEST((reg.name_of<customer_registered>() == nullptr));
  BOOST_TEST((reg.names() == std::vector<std::string>{"account.deposited"}));
  // The C++ type is still free for a valid registration.
  BOOST_TEST(!reg.add<customer_registered>("customer.registered", 3));
}

BOOST_AUTO_TEST_CASE(bad_upcasters_are_invalid_argument) {
  mp::event_registry reg;
  BOOST_REQUIRE(!reg.add<customer_registered>("customer.registered", 3));
  auto noop = [](json&) {};
  auto unknown = reg.add_upcaster("customer.unknown", 1, noop);
  BOOST_TEST((unknown.code() == errc::invalid_argument));
  auto at_current = reg.add_upcaster("customer.registered", 3, noop);
  BOOST_TEST((at_current.code() == errc::invalid_argument));
  auto above_current = reg.add_upcaster("customer.registered", 4, noop);
  BOOST_TEST((above_current.code() == errc::invalid_argument));
  BOOST_REQUIRE(!reg.add_upcaster("customer.registered", 2, noop));
  auto duplicate = reg.add_upcaster("customer.registered", 2,
                                    [](json&) { throw std::logic_error("x"); });
  BOOST_TEST((duplicate.code() == errc::invalid_argument));
  // The first upcaster stays in place: v2 decodes through the no-op.
  auto res = reg.decode<customer_registered>(envelope(
      "customer.registered", 2, msgpack_of(json{{"first_name", "Kept"}})));
  BOOST_REQUIRE_MESSAGE(res, (res ? std::string{} : res.error().to_string()));
  BOOST_TEST(res->first_name == "Kept");
}

BOOST_AUTO_TEST_CASE(type_not_encoding_to_a_map_is_encode_failed) {
  mp::event_registry reg;
  BOOST_REQUIRE(!reg.add<array_shaped>("shape.array"));
  auto ev = reg.to_event(array_shaped{});
  BOOST_REQUIRE(!ev);
  BOOST_TEST((ev.error().code() == errc::encode_failed));
  BOOST_TEST(ev.error().message().find("shape.array") != std::string::npos);
  std::string type;
  uint32_t version = 0;
  std::vector<uint8_t> payload;
  auto err = reg.encode(array_shaped{}, type, version, payload);
  BOOST_TEST((err.code() == errc::encode_failed));
}

BOOST_FIXTURE_TEST_CASE(payload_json_upcasts_registered_and_shows_raw_others,
                        registry_fixture) {
  auto old = reg.payload_json(
      envelope("customer.registered", 1, msgpack_of(customer_v1())));
  BOOST_REQUIRE_MESSAGE(old, (old ? std::string{} : old.error().to_string()));
  BOOST_TEST(*old == (json{{"first_name", "Ada"},
                           {"last_name", "Lovelace"},
                           {"email", "ada@example.org"},
                           {"tier", "legacy"}}));
  auto current = reg.payload_json(envelope(
      "account.deposited", 1,
      msgpack_of(json{{"account", "a"}, {"amount", 3}, {"currency", "EUR"}})));
  BOOST_REQUIRE(current);
  BOOST_TEST(current->at("amount") == 3);
  // An unregistered type (any version) prints as stored.
  json raw = {{"legacy", true}, {"count", 12}, {"tags", {"x", "y"}}};
  auto other = reg.payload_json(envelope("legacy.thing", 9, msgpack_of(raw)));
  BOOST_REQUIRE_MESSAGE(other,
                        (other ? std::string{} : other.error().to_string()));
  BOOST_TEST(*other == raw);
  // Bytes that are not msgpack cannot be shown.
  auto garbage = reg.payload_json(envelope("legacy.thing", 1, {0xc1}));
  BOOST_REQUIRE(!garbage);
  check_record_error(garbage.error(), errc::decode_failed, "legacy.thing", 1);
}

BOOST_FIXTURE_TEST_CASE(events_round_trip_through_the_journal,
                        registry_fixture) {
  mnemo::test::journal_fixture f;
  std::vector<new_event> batch;
  auto add = [&](auto value) {
    auto ev = reg.to_event(value);
    BOOST_REQUIRE_MESSAGE(ev, (ev ? std::string{} : ev.error().to_string()));
    batch.push_back(std::move(ev).value());
  };
  add(customer_registered{"Ada", "Lovelace", "ada@example.org", "gold"});
  add(deposited{"acc-1", 100, "EUR"});
  add(deposited{"acc-1", -30, "EUR"});
  // An event written by an old build, still at schema version 1.
  new_event old;
  old.type = "customer.registered";
  old.schema_version = 1;
  old.payload = msgpack_of(customer_v1());
  batch.push_back(old);
  const std::string stream = "account-1";
  auto appended = f.j->append(stream, batch, expected_version::no_stream());
  BOOST_REQUIRE_MESSAGE(
      appended, (appended ? std::string{} : appended.error().to_string()));
  for (int round = 0; round < 2; ++round) {
    BOOST_TEST_CONTEXT("round " << round) {
      auto events = f.j->read_stream(stream, 1,
                                     std::numeric_limits<uint64_t>::max(), 100);
      BOOST_REQUIRE(events);
      BOOST_REQUIRE(events->size() == 4u);
      auto& evs = *events;
      BOOST_TEST(evs[0].schema_version == 3u);
      auto c = reg.decode<customer_registered>(evs[0]);
      BOOST_REQUIRE(c);
      BOOST_TEST(c->tier == "gold");
      int64_t balance = 0;
      for (size_t i = 1; i < 3; ++i) {
        auto d = reg.decode<deposited>(evs[i]);
        BOOST_REQUIRE(d);
        balance += d->amount;
      }
      BOOST_TEST(balance == 70);
      BOOST_TEST(evs[3].schema_version == 1u);
      auto upcast = reg.decode<customer_registered>(evs[3]);
      BOOST_REQUIRE_MESSAGE(
          upcast, (upcast ? std::string{} : upcast.error().to_string()));
      BOOST_TEST(upcast->email == "ada@example.org");
      BOOST_TEST(upcast->last_name == "Lovelace");
      // Errors on stored events name the journal's stream and sequence.
      auto wrong = reg.decode<customer_registered>(evs[1]);
      BOOST_REQUIRE(!wrong);
      check_record_error(wrong.error(), errc::decode_failed,
                         "account.deposited", 1, stream, evs[1].sequence);
      f.reopen();
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
