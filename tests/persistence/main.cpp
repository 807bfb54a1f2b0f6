#define BOOST_TEST_MODULE mnemo_persistence
#include <boost/test/unit_test.hpp>
