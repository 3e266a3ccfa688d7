package planner

import (
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// GatewayAPIVersion is the apiVersion of the HTTPRoutes Gantry renders.
var GatewayAPIVersion = gatewayv1.GroupVersion.String()
