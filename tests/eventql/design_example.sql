SELECT entity_id, COUNT(*) as order_count, SUM(payload->>'amount')::numeric as total_spent,
       DATE_TRUNC('day', timestamp) as day
FROM events
WHERE event_type = 'order.placed' AND timestamp >= NOW() - INTERVAL '30 days'
GROUP BY entity_id, DATE_TRUNC('day', timestamp)
HAVING COUNT(*) > 5
ORDER BY total_spent DESC
LIMIT 100;
