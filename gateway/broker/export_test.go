package broker

// ReservedSubscribeMQTT is reservedSubscribeMQTT, for the tests of
// package broker_test.
var ReservedSubscribeMQTT = reservedSubscribeMQTT
